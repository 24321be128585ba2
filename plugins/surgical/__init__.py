"""Built-in specialty: surgical second opinion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.specialty import Assets, Specialty

from .rules import check_intake, check_review
from .specialty import SPECIALTY

__all__ = ["SPECIALTY"]


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_validate_intake(values: dict[str, Any]) -> dict[str, str] | None:
    # Takes only the arguments it uses; the date of birth is checked by core (not_before_birth).
    return check_intake(values) or None


@hookimpl
def consilium_assets() -> Assets:
    return Assets(name=SPECIALTY.slug, templates=Path(__file__).parent / "templates")


@hookimpl
def consilium_validate_review(values: dict[str, Any]) -> dict[str, str] | None:
    # Only for this specialty (core calls it for no other); checked before the doctor signs.
    return check_review(values) or None

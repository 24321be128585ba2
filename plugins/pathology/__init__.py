"""Built-in specialty: lab and biopsy reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.hookspecs import hookimpl
from core.specialty import Assets, Specialty

from .rules import check_intake, suggest_subspecialty
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
def consilium_suggest_subspecialty(values: dict[str, Any], subject_age: int | None) -> str | None:
    return suggest_subspecialty(values, subject_age)


@hookimpl
def consilium_assets() -> Assets:
    return Assets(name=SPECIALTY.slug, templates=Path(__file__).parent / "templates")

"""Built-in specialty: general second opinion."""

from __future__ import annotations

from pathlib import Path

from core.hookspecs import hookimpl
from core.specialty import Assets, Specialty

from .specialty import SPECIALTY

__all__ = ["SPECIALTY"]


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_assets() -> Assets:
    return Assets(name=SPECIALTY.slug, templates=Path(__file__).parent / "templates")

"""Built-in specialty: surgical second opinion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from core.hookspecs import hookimpl
from core.specialty import Assets, DocumentFacts, RecordsDetail, Specialty

from .rules import check_intake
from .specialty import SPECIALTY

__all__ = ["SPECIALTY"]


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_validate_intake(
    specialty: Specialty, values: dict[str, Any], subject_birth_date: date | None
) -> dict[str, str] | None:
    if specialty.slug != SPECIALTY.slug:
        return None
    return check_intake(values, subject_birth_date) or None


@hookimpl
def consilium_assets() -> Assets:
    return Assets(name=SPECIALTY.slug, templates=Path(__file__).parent / "templates")


@hookimpl
def consilium_inspect_document(
    specialty: Specialty, kind: str, open_file: Callable[[], BinaryIO]
) -> DocumentFacts | None:
    return None  # no specialty-specific reading of documents


@hookimpl
def consilium_describe_records(
    specialty: Specialty, facts: list[dict[str, str]]
) -> RecordsDetail | None:
    return None  # nothing to add about records beyond their names

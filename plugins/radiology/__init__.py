"""Built-in specialty: radiology second opinion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from core.hookspecs import hookimpl
from core.specialty import Assets, DocumentFacts, DocumentKind, RecordsDetail, Specialty

from .dicom import DicomFacts, describe_study, read_dicom, summarise_studies
from .rules import check_intake, check_review, suggest_subspecialty
from .specialty import SPECIALTY

__all__ = ["SPECIALTY"]


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_validate_intake(values: dict[str, Any]) -> dict[str, str] | None:
    # Only for radiology (core calls it for no other specialty); dates of birth are core's.
    return check_intake(values) or None


@hookimpl
def consilium_suggest_subspecialty(values: dict[str, Any], subject_age: int | None) -> str | None:
    return suggest_subspecialty(values, subject_age)


@hookimpl
def consilium_assets() -> Assets:
    return Assets(name=SPECIALTY.slug, templates=Path(__file__).parent / "templates")


@hookimpl
def consilium_inspect_document(
    kind: str, open_file: Callable[[], BinaryIO]
) -> DocumentFacts | None:
    if kind != DocumentKind.DICOM:
        return None  # a report (PDF or photo): nothing to read in it
    with open_file() as fileobj:
        reading = read_dicom(fileobj)
    if reading.facts is not None:
        # "group" / "group_label": core shows the files of one study as one line.
        [study] = summarise_studies([reading.facts])
        facts = {
            **reading.facts.as_dict(),
            "group": reading.facts.study_uid,
            "group_label": study.label.rsplit(", ", 1)[0],
        }
        return DocumentFacts(checklist_item="images", facts=facts)
    if reading.directory:
        return None  # a DICOMDIR (a CD's table of contents): neither an image nor a fault
    facts = {"problem": reading.reason or "", "note": UNREADABLE_NOTE}
    return DocumentFacts(flags=("malformed DICOM",), facts=facts)


UNREADABLE_NOTE = (
    "This file could not be read as DICOM: it may be incomplete or damaged. If you can, upload "
    "it again from the original disc or ask the imaging centre for a new copy."
)


@hookimpl
def consilium_describe_records(facts: list[dict[str, str]]) -> RecordsDetail | None:
    readings = [r for r in map(DicomFacts.from_dict, facts) if r is not None]
    if not readings:
        return None
    lines, warnings = describe_study(readings)
    return RecordsDetail(lines=tuple(lines), warnings=tuple(warnings))


@hookimpl
def consilium_validate_review(values: dict[str, Any]) -> dict[str, str] | None:
    # Only for this specialty (core calls it for no other); checked before the doctor signs.
    return check_review(values) or None

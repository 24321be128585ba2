"""A third-party specialty as a hospital would install it (fixture for tests/test_plugins.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from core.hookspecs import hookimpl
from core.specialty import (
    Assets,
    Choice,
    DateField,
    DocumentFacts,
    DocumentKind,
    Form,
    LongText,
    RecordsDetail,
    RequiredDocument,
    ShowIf,
    SingleChoice,
    Specialty,
    Text,
    YesNo,
)

HERE = Path(__file__).resolve().parent

SPECIALTY = Specialty(
    slug="dermatology",
    title="Dermatology second opinion",
    summary="Choose this when you want a dermatologist to look again at a skin diagnosis.",
    audience="Adults and children with a skin, hair or nail problem.",
    intake=Form(
        version=1,
        fields=(
            Text(name="diagnosis", label="What diagnosis were you given?", required=True),
            SingleChoice(
                name="site",
                label="Where on the body is it?",
                required=True,
                choices=(
                    Choice("face", "Face"),
                    Choice("trunk", "Chest or back"),
                    Choice("limb", "Arm or leg"),
                ),
            ),
            DateField(name="noticed", label="When did you first notice it?", required=True),
            YesNo(name="biopsy", label="Was a biopsy taken?", required=True),
            LongText(
                name="biopsy_result",
                label="What did the biopsy report say?",
                required=True,
                show_if=ShowIf("biopsy", ("yes",)),
            ),
        ),
    ),
    required_documents=(
        RequiredDocument(
            key="photos",
            label="Photos of the skin",
            help="One close-up and one from further away, in daylight.",
            kinds=(DocumentKind.IMAGE,),
        ),
    ),
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_validate_intake(
    specialty: Specialty, values: dict[str, Any], subject_birth_date: date | None
) -> dict[str, str] | None:
    if specialty.slug != SPECIALTY.slug:
        return None
    noticed = values.get("noticed")  # cleaned: ISO text, or None
    if subject_birth_date and noticed and date.fromisoformat(noticed) < subject_birth_date:
        return {"noticed": "This date is before the patient was born. Check the date."}
    return None


@hookimpl
def consilium_assets() -> Assets:
    return Assets(name=SPECIALTY.slug, templates=HERE / "templates", static=HERE / "static")


@hookimpl
def consilium_inspect_document(
    specialty: Specialty, kind: str, open_file: Callable[[], BinaryIO]
) -> DocumentFacts | None:
    return None


@hookimpl
def consilium_describe_records(
    specialty: Specialty, facts: list[dict[str, str]]
) -> RecordsDetail | None:
    return None  # nothing to add about records beyond their names

"""A third-party specialty as a hospital would install it (fixture for tests/test_plugins.py):
only the hooks it needs."""

from __future__ import annotations

from pathlib import Path

from core.hookspecs import hookimpl
from core.specialty import (
    Assets,
    Choice,
    DateField,
    DocumentKind,
    Form,
    LongText,
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
            DateField(
                name="noticed",
                label="When did you first notice it?",
                required=True,
                not_before_birth=True,  # checked by core: no hook needed
            ),
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
def consilium_assets() -> Assets:
    return Assets(name=SPECIALTY.slug, templates=HERE / "templates", static=HERE / "static")

"""Built-in specialty: lab and biopsy reports."""

from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(
    slug="pathology",
    title="Lab and biopsy reports",
    summary=(
        "Choose this when you want a pathologist to review blood work, a biopsy or cytology report."
    ),
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]

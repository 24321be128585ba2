"""Built-in specialty: general second opinion."""

from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(
    slug="general",
    title="General second opinion",
    summary="Choose this when you want another doctor to look at a diagnosis or treatment plan.",
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]

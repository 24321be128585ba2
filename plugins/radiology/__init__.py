"""Built-in specialty: radiology second opinion."""

from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(
    slug="radiology",
    title="Radiology second opinion",
    summary=(
        "Choose this when you want a radiologist to look again at an MRI, CT, X-ray, "
        "ultrasound or mammogram."
    ),
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]

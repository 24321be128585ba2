"""Built-in specialty: surgical second opinion."""

from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(
    slug="surgical",
    title="Surgical second opinion",
    summary=(
        "Choose this when a surgeon has recommended an operation and you want another "
        "view before deciding."
    ),
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]

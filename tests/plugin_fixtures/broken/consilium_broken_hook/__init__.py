"""A plugin whose hook implementation misspells an argument: pluggy refuses to register it."""

from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(
    slug="ophthalmology", title="Ophthalmology second opinion", summary="Never shown."
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_validate_intake(specialty, values, birth_date):  # the spec says subject_birth_date
    return None

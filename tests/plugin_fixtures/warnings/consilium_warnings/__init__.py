"""A plugin that loads, with mistakes pluggy alone would ignore silently: hook functions without
@hookimpl (one with a misspelt name) and a report template that is not in its templates folder.
"""

from __future__ import annotations

from pathlib import Path

from core.hookspecs import hookimpl
from core.specialty import Assets, Specialty

SPECIALTY = Specialty(
    slug="allergy",
    title="Allergy second opinion",
    summary="Choose this when you want an allergist to look again at an allergy diagnosis.",
    report_template="allergy/report.html",  # not in templates/allergy/
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


def consilium_assets() -> Assets:  # no @hookimpl: never called
    return Assets(name="allergy", templates=Path(__file__).resolve().parent / "templates")


def consilium_validate_intakes(values: dict) -> None:  # no @hookimpl, and a misspelt name
    return None

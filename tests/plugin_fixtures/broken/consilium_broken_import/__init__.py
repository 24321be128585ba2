"""A plugin whose module fails to import (a dependency that is not installed)."""

import consilium_skin_atlas  # noqa: F401  (not installed: importing this module fails)

from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(slug="neurology", title="Neurology second opinion", summary="Never shown.")


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]

"""A plugin implementing a hook that does not exist (a misspelt hook name)."""

from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(slug="urology", title="Urology second opinion", summary="Never shown.")


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_asset() -> None:  # the hook is consilium_assets
    return None

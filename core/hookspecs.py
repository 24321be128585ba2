"""The plugin contract: every hook a specialty plugin may implement.

Hooks are synchronous and called with keyword arguments; each is documented, with its exact
signature, in docs/plugins.md and tested by a `test_hook_<name>` test.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pluggy

from core.specialty import Assets, Specialty

PROJECT = "consilium"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def consilium_specialties() -> list[Specialty]:
    """Return the specialties this plugin provides (usually one)."""
    raise NotImplementedError


@hookspec
def consilium_validate_intake(
    specialty: Specialty, values: dict[str, Any], subject_birth_date: date | None
) -> dict[str, str] | None:
    """Check rules that span several intake fields (or the patient's age) after every field
    passed its own checks. Return {field name: message} for problems, or None. Called for every
    specialty: return None for one that is not yours."""
    raise NotImplementedError


@hookspec
def consilium_assets() -> Assets | None:
    """Return the template and static folders this plugin contributes, or None."""
    raise NotImplementedError

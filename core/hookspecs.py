"""The plugin contract: every hook a specialty plugin may implement.

Each hook is called with keyword arguments and documented in docs/plugins.md.
"""

from __future__ import annotations

import pluggy

from core.specialty import Specialty

PROJECT = "consilium"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def consilium_specialties() -> list[Specialty]:
    """Return the specialties this plugin provides (usually one)."""
    raise NotImplementedError

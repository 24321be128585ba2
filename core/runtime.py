"""The settings of the running app, for services that need them (links, keys, limits).

`create_app` (and the CLI) call `configure`; services call `settings()`.
"""

from __future__ import annotations

from core.settings import Settings

_current: Settings | None = None


def configure(settings: Settings) -> None:
    global _current
    _current = settings


def settings() -> Settings:
    if _current is None:
        raise RuntimeError("settings not configured: call core.runtime.configure() first")
    return _current

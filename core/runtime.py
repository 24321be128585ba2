"""The settings of the running app, for services that need them (links, keys, limits).

`create_app` (and the CLI) call `configure`; services call `settings()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from core.plugins import PluginHost

_current: Settings | None = None
_plugins: PluginHost | None = None


def configure(settings: Settings) -> None:
    global _current
    _current = settings


def settings() -> Settings:
    if _current is None:
        raise RuntimeError("settings not configured: call core.runtime.configure() first")
    return _current


def configure_plugins(host: PluginHost) -> None:
    global _plugins
    _plugins = host


def plugins() -> PluginHost:
    """The loaded plugins (specialties, payment providers) of the running app."""
    global _plugins
    if _plugins is None:  # a service called outside the app (CLI, tests): load them now
        from core.plugins import PluginHost

        _plugins = PluginHost.load(settings())
    return _plugins

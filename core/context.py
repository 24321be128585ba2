"""The running app's context: its settings, plugins, record store and event handlers.

`core.app.build_context` builds one for an app (`create_app`), for a CLI command, or for a
test. It is active (`current()`) while that app serves a request or runs its background work:
a middleware sets it per request and the lifespan sets it for the tasks it starts. Services ask
`current()` for what they need, so two apps in one process (tests do this) each see their own
settings and plugins, never a module global.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from core.events import Events
from core.plugins import PluginHost
from core.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    plugins: PluginHost
    events: Events
    # Opens the record store (core.documents.service.Records) on first use: opening it makes the
    # keyring file, which a command that needs no records must not do.
    open_records: Callable[[], Any]
    _records: Any = field(default=None, repr=False)

    @property
    def records(self) -> Any:
        """core.documents.service.Records; typed loosely: this module sits below documents."""
        if self._records is None:
            self._records = self.open_records()
        return self._records

    async def aclose(self) -> None:
        """Close what this context opened (the record store's connections)."""
        if self._records is not None:
            await self._records.store.aclose()


def standalone(settings: Settings, open_records: Callable[[], Any] | None = None) -> AppContext:
    """A context for a command of one domain (audit verify, documents scrub): its settings and
    plugins, and no subscriptions between domains (such a command publishes no facts). The
    app and `consilium` commands that change cases use `core.app.build_context`."""

    def no_records() -> Any:
        raise RuntimeError("this command opened no record store")

    return AppContext(
        settings=settings,
        plugins=PluginHost.load(settings),
        events=Events(),
        open_records=open_records or no_records,
    )


_current: ContextVar[AppContext | None] = ContextVar("consilium_context", default=None)


def current() -> AppContext:
    found = _current.get()
    if found is None:
        raise RuntimeError(
            "no app context: call this inside a request, or within core.context.use(...)"
        )
    return found


def settings() -> Settings:
    return current().settings


def plugins() -> PluginHost:
    return current().plugins


def activate(context: AppContext) -> Token[AppContext | None]:
    """Make `context` current for this task and the tasks it starts; `deactivate` undoes it."""
    return _current.set(context)


def deactivate(token: Token[AppContext | None]) -> None:
    _current.reset(token)


@contextmanager
def use(context: AppContext) -> Iterator[AppContext]:
    token = activate(context)
    try:
        yield context
    finally:
        deactivate(token)

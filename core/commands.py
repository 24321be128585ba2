"""What every `consilium` command shares: settings or a readable error, and running async work
with the database bound, pooled and an app context current (core/context.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from core import context, db
from core.context import AppContext
from core.settings import ConfigurationError, Settings, load_settings

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


def run(
    settings: Settings,
    work: Callable[[], Awaitable[T]],
    *,
    app_context: AppContext | None = None,
) -> T:
    """Run `work()` in a fresh event loop: database configured and pooled, `app_context` (or a
    standalone one) current, and whatever it opened closed afterwards."""
    db.configure_database(settings)
    current = app_context or context.standalone(settings)

    async def runner() -> T:
        with context.use(current):
            try:
                await db.start_pool(settings)
                try:
                    return await work()
                finally:
                    await db.close_pool()
            finally:
                await current.aclose()

    return asyncio.run(runner())

"""Database engine: SQLite by default, PostgreSQL when DATABASE_URL says so.

Piccolo finds its engine through `piccolo_conf.DB`; `configure_database` builds the engine for
the given settings and binds it to every table, so tests can switch engines per test.

On SQLite the engine keeps its connections (`core/sqlite.py`: one serialised writer, a few
readers, per event loop) instead of Piccolo's connection per query; `start_pool` and
`close_pool` open and close them as they do PostgreSQL's pool.
"""

from __future__ import annotations

import inspect
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from piccolo.conf.apps import Finder
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.table import Table

from core.settings import Settings
from core.sqlite import KeptSQLiteEngine

log = logging.getLogger("consilium.db")

_after_commit: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "consilium_after_commit", default=None
)

# A writer waits this long for another writer's lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def build_engine(settings: Settings) -> Engine:
    if settings.uses_postgres:
        return PostgresEngine(config={"dsn": settings.database_url})
    return KeptSQLiteEngine(
        path=str(settings.sqlite_path), busy_timeout=SQLITE_BUSY_TIMEOUT_SECONDS
    )


def prepare_sqlite_file(settings: Settings) -> None:
    path = settings.sqlite_path
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the database file: set once, it holds for every later connection.
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def configure_database(settings: Settings) -> Engine:
    """Build the engine and make it the one every Piccolo table (and migration) uses."""
    import piccolo_conf

    if not settings.uses_postgres:
        prepare_sqlite_file(settings)
    replaced = getattr(piccolo_conf, "DB", None)
    if isinstance(replaced, KeptSQLiteEngine):
        replaced.dispose()  # its connections of finished loops; running loops close their own
    engine = build_engine(settings)
    piccolo_conf.DB = engine
    for table in Finder().get_table_classes():
        table._meta.db = engine
    from piccolo.apps.migrations.tables import Migration

    Migration._meta.db = engine
    return engine


def current_engine() -> Engine:
    import piccolo_conf

    return piccolo_conf.DB


def is_postgres() -> bool:
    return isinstance(current_engine(), PostgresEngine)


@asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """A write transaction; joins the one already open in this task, if any.

    SQLite transactions start IMMEDIATE so that a read-then-write never fails when it upgrades
    its lock (Piccolo's default DEFERRED does, at once, under concurrency); in this process they
    also queue for the one writer connection (`core/sqlite.py`), whose lock they hold until the
    commit or rollback. Reads in the transaction run on that connection and see its writes;
    other tasks read on the reader connections and see them only after the commit.
    """
    engine = current_engine()
    if engine.current_transaction.get() is not None:
        yield
        return
    callbacks: list[Callable[[], None]] = []
    token = _after_commit.set(callbacks)
    try:
        if isinstance(engine, SQLiteEngine):
            async with engine.transaction(transaction_type=TransactionType.immediate):
                yield
        else:
            async with engine.transaction():
                yield
    finally:
        _after_commit.reset(token)
    for callback in callbacks:  # reached only when the transaction committed
        result = callback()
        if inspect.isawaitable(result):
            try:
                await result
            except Exception as exc:
                # Committed already: an effect that failed cannot undo the change. Its owner
                # records what is still to do (e.g. a refund due); the type only is logged.
                log.error("after-commit effect failed: %s", type(exc).__name__)


def on_commit(callback: Callable[[], Awaitable[None] | None]) -> None:
    """Run `callback` once the current `transaction()` commits: effects on the outside world
    (wake the mail worker, call a payment provider) that must never happen for a change that
    rolled back. An async callback is awaited by the code that opened the transaction, after
    the commit. Without an open transaction a plain callback runs at once; an async one needs a
    transaction (there is nobody to await it)."""
    callbacks = _after_commit.get()
    if callbacks is not None:
        callbacks.append(callback)
        return
    result = callback()
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # never awaited: do not leave a "coroutine was never awaited" warning
        raise RuntimeError("an async on_commit callback needs an open db.transaction()")


async def run_migrations() -> None:
    from piccolo.apps.migrations.commands.forwards import run_forwards

    result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migration failed: {result.message}")


async def analyze() -> int:
    """Refresh SQLite's query planner statistics (a periodic job). SQLite keeps none until
    asked: without them it passes over the board's partial index and sorts every open case
    instead (bench/queue.py, EXPLAIN at 100k cases). PostgreSQL's autovacuum keeps its own."""
    if not is_postgres():
        await current_engine().run_ddl("ANALYZE")
    return 0


async def start_pool(settings: Settings) -> None:
    engine = current_engine()
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(
            min_size=settings.database_pool_min, max_size=settings.database_pool_max
        )
    elif isinstance(engine, KeptSQLiteEngine):
        await engine.start_connection_pool()


async def close_pool() -> None:
    engine = current_engine()
    if isinstance(engine, PostgresEngine) and engine.pool is not None:
        await engine.close_connection_pool()
    elif isinstance(engine, KeptSQLiteEngine):
        await engine.close_connection_pool()


async def next_in_year(counter: type[Table], year: int) -> int:
    """The next number of `year` from a counter table (columns `year` unique, `last`): one
    atomic statement on both engines, so concurrent callers never get the same number. Case
    references ("SO-2026-00042") and receipt numbers ("R-2026-00007") count this way."""
    table = counter._meta.tablename  # a table class's name, never user input
    rows = await counter.raw(
        f"INSERT INTO {table} (year, last) VALUES ({{}}, 1) "  # noqa: S608
        f"ON CONFLICT (year) DO UPDATE SET last = {table}.last + 1 RETURNING last",
        year,
    )
    return int(rows[0]["last"])

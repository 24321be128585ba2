"""Shared fixtures.

Every test that uses `settings` (and so `app`, `client`) runs once per database engine:
SQLite always, PostgreSQL unless CONSILIUM_TEST_POSTGRES=off. An unreachable PostgreSQL is an
error, never a skip. Each test gets a fresh database cloned from a migrated template.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar import Litestar

from core import context, db
from core.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get(
    "CONSILIUM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ENGINES = ["sqlite"] + ([] if POSTGRES_ADMIN_URL == "off" else ["postgres"])
SECRET = "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


def _pg_url(name: str) -> str:
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def _pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def make_settings(var_dir: Path, database_url: str | None, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": var_dir,
        "database_url": database_url,
        "secret_key": SECRET,
        "base_url": "http://testserver.local",
        "outbox_poll_seconds": 0.2,
        "password_hash_concurrency": 2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def _migrate(settings: Settings) -> None:
    db.configure_database(settings)
    await db.run_migrations()


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One migrated database per engine; tests clone it."""
    templates: dict[str, str] = {}
    sqlite_dir = tmp_path_factory.mktemp("sqlite-template")
    asyncio.run(_migrate(make_settings(sqlite_dir, None)))
    templates["sqlite"] = str(sqlite_dir / "consilium.sqlite3")
    pg_name = None
    if "postgres" in ENGINES:
        pg_name = f"consilium_tpl_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{pg_name}"'))
        asyncio.run(_migrate(make_settings(tmp_path_factory.mktemp("pg"), _pg_url(pg_name))))
        templates["postgres"] = pg_name
    yield templates
    if pg_name:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


@pytest.fixture(params=ENGINES)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: dict[str, str]
) -> Iterator[str | None]:
    if request.param == "sqlite":
        shutil.copy(migrated_templates["sqlite"], tmp_path / "consilium.sqlite3")
        yield None
        return
    name = f"consilium_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_templates["postgres"]}"'))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Iterator[Settings]:
    """Settings for a fresh database; also binds the engine and makes an app context current,
    so services can be called directly."""
    result = make_settings(tmp_path, database_url)
    with use_settings(result):
        yield result


@contextmanager
def use_settings(settings: Settings) -> Iterator[None]:
    """Bind the database and make a context for `settings` current (core/context.py)."""
    from core.app import build_context

    db.configure_database(settings)
    with context.use(build_context(settings)):
        yield


def make_app(settings: Settings) -> Litestar:
    """An app for settings a test made itself; its context becomes current for the rest of the
    test (pytest-asyncio runs each test in its own copy of the context, so it ends with it)."""
    from core.app import create_app

    db.configure_database(settings)
    created = create_app(settings)
    context.activate(created.state.context)
    return created


@pytest.fixture
def app(settings: Settings) -> Iterator[Litestar]:
    from core.app import create_app

    created = create_app(settings)
    # The test's own service calls see what the app's requests see (its plugins, its store).
    with context.use(created.state.context):
        yield created


BASE_URL = "http://testserver.local"


@pytest.fixture
async def running_app(app: Litestar) -> AsyncIterator[Litestar]:
    """The app with its lifespan (pool, outbox worker) running in the test's own event loop.

    Litestar's AsyncTestClient runs the app in another thread and loop, which breaks a
    PostgreSQL pool shared with the test; httpx's ASGI transport keeps everything in one loop.
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold_lifespan() -> None:
        # Entered and left in one task: anyio's cancel scopes inside the lifespan require it.
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold_lifespan())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # startup failed: raise its error
    yield app
    stop.set()
    await task


def open_client(app: Litestar) -> httpx.AsyncClient:
    """Another browser: its own cookies, the same running app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


@pytest.fixture
async def client(running_app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with open_client(running_app) as browser:
        yield browser

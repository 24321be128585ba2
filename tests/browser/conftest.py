"""A real server (uvicorn on a free loopback port) and Debian's Chromium driven by Playwright.

Browser tests never skip: a missing Chromium is an error (`make test` installs it).
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core import context, db
from core.accounts import service as accounts
from core.app import create_app
from core.settings import Settings
from tests.conftest import SECRET
from tests.support import PASSWORD

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    settings: Settings


@contextmanager
def serving(var_dir: Path, *, prepare=None, **overrides: object) -> Iterator[LiveServer]:
    """The app under uvicorn on a free port, migrated; `prepare(app)` may add test plugins."""
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        var_dir=var_dir,
        secret_key=SECRET,
        base_url=f"http://127.0.0.1:{port}",
        outbox_poll_seconds=0.2,
        port=port,
        **overrides,
    )
    db.configure_database(settings)
    asyncio.run(db.run_migrations())
    app = create_app(settings)
    if prepare is not None:
        prepare(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    # The test's own service calls (seeding people, reading plugins) see the served app's context.
    with context.use(app.state.context):
        yield LiveServer(url=settings.base_url, settings=settings)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The app on SQLite with mail written to var/mail, as `make run` serves it."""
    with serving(tmp_path_factory.mktemp("live")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        "Chromium missing: run `make system-deps` (apt install chromium)"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(page: Page, server: LiveServer, email: str) -> None:
    """Sign a patient in through the form, as a person does; lands on "My cases"."""
    page.goto(server.url + "/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My cases")).to_be_visible()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run a service call from a sync browser test: Playwright's sync API owns this thread's
    event loop, so it runs in another thread, with this thread's app context (core/context.py)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(contextvars.copy_context().run, asyncio.run, work).result()


def register_patient(email: str, full_name: str, country: str = "PK") -> str:
    """A confirmed patient account on the live server's database (password PASSWORD)."""
    run_async(
        accounts.register_patient(
            email=email, password=PASSWORD, full_name=full_name, phone="", country=country, ip=None
        )
    )
    return email

"""What a request that does nothing special costs (issue 12): the signed-in user is read once,
and an unchanged session is written nowhere, on either session store."""

from __future__ import annotations

import time

import pytest

from core import db, security
from tests.conftest import make_app, make_settings, open_client
from tests.support import make_person, sign_in

REDIS_URL = "redis://127.0.0.1:6379/0"


async def test_the_signed_in_user_is_read_once_per_request(client, monkeypatch) -> None:
    await sign_in(client, await make_person("patient", "once@example.com"))
    engine_class = type(db.current_engine())
    real_run = engine_class.run_querystring
    reads_of_users: list[str] = []

    async def counting_run(self, querystring, *args, **kwargs):  # type: ignore[no-untyped-def]
        sql = str(querystring)
        if "account_user" in sql and sql.lstrip().upper().startswith("SELECT"):
            reads_of_users.append(sql)
        return await real_run(self, querystring, *args, **kwargs)

    monkeypatch.setattr(engine_class, "run_querystring", counting_run)
    for path in ("/dashboard", "/account"):
        reads_of_users.clear()
        assert (await client.get(path)).status_code == 200
        assert len(reads_of_users) == 1, (path, reads_of_users)


@pytest.mark.parametrize("store", ["files", "redis"])
async def test_an_unchanged_session_is_written_to_no_store(
    tmp_path, database_url, monkeypatch, store: str
) -> None:
    """The last-seen time moves at most once a minute; between, a request writes nothing to the
    session store (files or Redis) and sends no cookie."""
    overrides = {"redis_url": REDIS_URL} if store == "redis" else {}
    app = make_app(make_settings(tmp_path, database_url, **overrides))
    person = await make_person("patient", f"quiet-{store}@example.com")
    sessions = app.stores.get("sessions")
    writes: list[str] = []
    real_set = type(sessions).set

    async def counting_set(self, key, value, expires_in=None):  # type: ignore[no-untyped-def]
        writes.append(key)
        return await real_set(self, key, value, expires_in=expires_in)

    monkeypatch.setattr(type(sessions), "set", counting_set)
    # Leaving the store closes the app's Redis client (without a lifespan nothing else does).
    async with open_client(app) as client, sessions:
        await sign_in(client, person)
        writes.clear()
        for _ in range(3):
            response = await client.get("/dashboard")
            assert response.status_code == 200
            assert not any("session=" in c for c in response.headers.get_list("set-cookie"))
        assert writes == []
        real = time.time
        later = real() + security.SEEN_RESOLUTION_SECONDS
        monkeypatch.setattr(security.time, "time", lambda: later)
        assert (await client.get("/dashboard")).status_code == 200
        assert len(writes) == 1  # the last-seen time moved on: one write, the cookie renewed

"""The audit log (docs/security.md 22): append-only, hash-chained, verifiable, searchable.

Every test taking `settings` runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from httpx import AsyncClient

from core import clock, db
from core.accounts.tables import User
from core.admin.audit import format_local, parse_filters
from core.audit import service
from core.audit.cli import audit as audit_cli
from core.audit.tables import AuditEvent
from core.keys import derive_key
from core.settings import Settings
from tests.support import make_person, sign_in

# Helpers ------------------------------------------------------------------------------------


async def raw(sql: str) -> None:
    await AuditEvent.raw(sql)


async def drop_triggers() -> None:
    """What an attacker holding the table owner's rights can do before rewriting history."""
    if db.is_postgres():
        await raw("DROP TRIGGER audit_event_no_update_delete ON audit_event")
        await raw("DROP TRIGGER audit_event_no_truncate ON audit_event")
    else:
        await raw("DROP TRIGGER audit_event_no_update")
        await raw("DROP TRIGGER audit_event_no_delete")


async def all_rows() -> list[dict]:
    return await AuditEvent.select().order_by(AuditEvent.seq)


async def record_some(count: int) -> None:
    for number in range(count):
        await service.record(
            "document.view",
            object_type="document",
            object_id=f"doc-{number}",
            case_id="C-1",
            subject_uid=uuid.uuid4(),
            ip="192.0.2.7",
            details={"page": number},
        )


async def make_user(email: str, role: str) -> User:
    user = User(uid=uuid.uuid4(), email=email, role=role, full_name="Test Person")
    await user.save()
    return user


# Chaining ------------------------------------------------------------------------------------


async def test_rows_chain_and_verify_clean(settings: Settings) -> None:
    admin = await make_user("admin@example.org", "admin")
    await service.record("login.success", actor=admin, ip="::ffff:192.0.2.1")
    await service.record("login.failure", outcome="failure", ip="192.0.2.9", details={"n": 1})
    await record_some(2)

    rows = await all_rows()
    assert [row["seq"] for row in rows] == [1, 2, 3, 4]
    assert rows[0]["prev_hash"] == service.GENESIS
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, len(rows)))
    assert rows[0]["actor_uid"] == str(admin.uid)
    assert rows[0]["actor_role"] == "admin"
    assert rows[1]["actor_uid"] is None
    assert json.loads(rows[1]["details"]) == {"n": 1}
    # The MAC is keyed with the audit key derived from the deployment secret.
    key = derive_key(settings, "audit-chain")
    assert rows[2]["hash"] == service.chain_mac(key, rows[2]["prev_hash"], rows[2])
    assert rows[2]["hash"] != service.chain_mac(b"another key", rows[2]["prev_hash"], rows[2])
    assert await service.verify() == []
    assert (await service.verify_chain()).rows == 4


async def test_record_joins_the_callers_transaction(settings: Settings) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await service.record("case.update", case_id="C-9")
            raise RuntimeError("the change failed")
    assert await all_rows() == []  # the event rolled back with the change it described

    async with db.transaction():
        await service.record("case.update", case_id="C-9")
        await service.record("case.update", case_id="C-10")
    assert [row["case_id"] for row in await all_rows()] == ["C-9", "C-10"]
    assert await service.verify() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"details": {"email": "someone@example.org"}},
        {"details": {"full_name": "Ayesha Khan"}},
        {"details": {"form": {"diagnosis": "…"}}},
        {"details": {"blob": "x" * 3000}},
        {"subject_uid": "not-a-uuid"},
        {"case_id": "c" * 65},
    ],
)
async def test_record_refuses_personal_data_and_bad_values(
    settings: Settings, kwargs: dict
) -> None:
    with pytest.raises(service.AuditError):
        await service.record("case.view", **kwargs)
    with pytest.raises(service.AuditError):
        await service.record("Case View")
    assert await all_rows() == []


# Append-only --------------------------------------------------------------------------------


async def test_update_and_delete_are_refused(settings: Settings) -> None:
    await record_some(3)
    before = await all_rows()
    with pytest.raises(Exception, match="append-only"):
        await raw("UPDATE audit_event SET outcome = 'failure' WHERE seq = 2")
    with pytest.raises(Exception, match="append-only"):
        await raw("DELETE FROM audit_event WHERE seq = 3")
    with pytest.raises(Exception, match="append-only"):
        await raw("DELETE FROM audit_event")
    if db.is_postgres():
        with pytest.raises(Exception, match="append-only"):
            await raw("TRUNCATE audit_event")
    assert await all_rows() == before
    assert await service.verify() == []


# Tampering by someone with owner rights (triggers dropped) ---------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        "outcome = 'failure'",
        "details = '{}'",
        "ip = '203.0.113.66'",
        "actor_role = 'admin'",
    ],
)
async def test_verify_reports_an_altered_row(settings: Settings, change: str) -> None:
    await record_some(4)
    await drop_triggers()
    await raw(f"UPDATE audit_event SET {change} WHERE seq = 2")
    problems = await service.verify()
    assert problems == ["row 2: contents do not match its MAC (row altered)"]


async def test_verify_reports_a_deleted_middle_row(settings: Settings) -> None:
    await record_some(5)
    await drop_triggers()
    await raw("DELETE FROM audit_event WHERE seq = 3")
    problems = await service.verify()
    assert any("row 4: row 3 is missing" in problem for problem in problems)
    assert any("row 4: does not follow row 2" in problem for problem in problems)


async def test_verify_reports_swapped_rows(settings: Settings) -> None:
    await record_some(4)
    await drop_triggers()
    await raw("UPDATE audit_event SET seq = 1000 WHERE seq = 2")
    await raw("UPDATE audit_event SET seq = 2 WHERE seq = 3")
    await raw("UPDATE audit_event SET seq = 3 WHERE seq = 1000")
    problems = await service.verify()
    assert any(problem.startswith("row 2: does not follow row 1") for problem in problems)
    assert any(problem.startswith("row 2: contents do not match") for problem in problems)
    assert any(problem.startswith("row 3: contents do not match") for problem in problems)


async def test_verify_reports_swapped_rows_even_with_relinked_hashes(settings: Settings) -> None:
    """The attacker swaps two rows and rewrites prev_hash so the links look right."""
    await record_some(4)
    await drop_triggers()
    rows = {row["seq"]: row for row in await all_rows()}
    await raw("UPDATE audit_event SET seq = 1000 WHERE seq = 2")
    await raw("UPDATE audit_event SET seq = 2 WHERE seq = 3")
    await raw("UPDATE audit_event SET seq = 3 WHERE seq = 1000")
    # New order 1, old-3, old-2, 4: relink every prev_hash along it.
    for seq, prev in ((2, rows[1]["hash"]), (3, rows[3]["hash"]), (4, rows[2]["hash"])):
        await raw(f"UPDATE audit_event SET prev_hash = '{prev}' WHERE seq = {seq}")
    problems = await service.verify()
    assert not any("does not follow" in problem for problem in problems)
    assert [p for p in problems if "contents do not match" in p] == [
        "row 2: contents do not match its MAC (row altered)",
        "row 3: contents do not match its MAC (row altered)",
        "row 4: contents do not match its MAC (row altered)",
    ]


async def test_verify_reports_a_forged_row_appended_without_the_key(settings: Settings) -> None:
    await record_some(2)
    last = (await all_rows())[-1]
    forged = {**last, "seq": 3, "action": "case.view", "prev_hash": last["hash"]}
    forged["hash"] = service.chain_mac(b"guessed key", last["hash"], forged)
    del forged["seq"]
    await AuditEvent.insert(AuditEvent(seq=3, **forged))  # INSERT stays allowed
    assert await service.verify() == ["row 3: contents do not match its MAC (row altered)"]


# The CLI ----------------------------------------------------------------------------------------


def test_cli_verify_exit_codes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("CONSILIUM_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("CONSILIUM_SECRET_KEY", settings.secret_key or "")
    monkeypatch.delenv("CONSILIUM_DATABASE_URL", raising=False)
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    asyncio.run(record_some(3))
    runner = CliRunner()

    intact = runner.invoke(audit_cli, ["verify"])
    assert intact.exit_code == 0, intact.output
    assert "audit log intact: 3 rows" in intact.output

    async def tamper() -> None:
        db.configure_database(settings)
        await drop_triggers()
        await raw("UPDATE audit_event SET object_id = 'doc-9' WHERE seq = 2")

    asyncio.run(tamper())
    damaged = runner.invoke(audit_cli, ["verify"])
    assert damaged.exit_code == 1
    assert "row 2: contents do not match its MAC (row altered)" in damaged.output
    assert "intact" not in damaged.output


# Concurrency ------------------------------------------------------------------------------------


async def test_concurrent_records_keep_the_chain_linear(settings: Settings) -> None:
    await db.start_pool(settings)  # PostgreSQL: as in the app, a pool shared by all requests
    try:
        await asyncio.gather(
            *(service.record("document.view", object_id=f"d{n}") for n in range(50))
        )
    finally:
        await db.close_pool()
    rows = await all_rows()
    assert [row["seq"] for row in rows] == list(range(1, 51))
    assert sorted(row["object_id"] for row in rows) == sorted(f"d{n}" for n in range(50))
    assert await service.verify() == []


# Search -----------------------------------------------------------------------------------------


async def record_at(monkeypatch: pytest.MonkeyPatch, at: datetime, action: str, **kw) -> None:
    monkeypatch.setattr(clock, "now", lambda: at)
    await service.record(action, **kw)


async def test_search_filters_by_date_user_action_and_subject(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor = await make_user("doctor@example.org", "doctor")
    patient_a = await make_user("a@example.org", "patient")
    patient_b = await make_user("b@example.org", "patient")
    # Deployment time zone is Asia/Karachi (UTC+5).
    events = [
        (datetime(2026, 10, 1, 18, 59, tzinfo=UTC), "login.success", doctor, patient_a),  # 1 Oct
        (datetime(2026, 10, 1, 19, 0, tzinfo=UTC), "login.failure", None, patient_a),  # 2 Oct 00:00
        (datetime(2026, 10, 2, 18, 55, tzinfo=UTC), "document.view", doctor, patient_b),  # 2 Oct
        (datetime(2026, 10, 2, 19, 5, tzinfo=UTC), "logout", doctor, patient_b),  # 3 Oct 00:05
    ]
    for at, action, actor, subject in events:
        await record_at(monkeypatch, at, action, actor=actor, subject_uid=subject.uid)

    async def actions(**filters) -> list[str]:
        return [entry.action for entry in (await service.search(**filters)).entries]

    doctor_uid, a_uid, b_uid = (str(person.uid) for person in (doctor, patient_a, patient_b))

    assert await actions() == ["logout", "document.view", "login.failure", "login.success"]
    day = date(2026, 10, 2)
    assert await actions(date_from=day, date_to=day) == ["document.view", "login.failure"]
    assert await actions(date_from=date(2026, 10, 3)) == ["logout"]
    assert await actions(actor_uids=[doctor_uid]) == ["logout", "document.view", "login.success"]
    assert await actions(actor_uids=[]) == []  # an email with no account
    # "login" is a family: its dotted children, never "logout".
    assert await actions(action="login") == ["login.failure", "login.success"]
    assert await actions(action="login.failure") == ["login.failure"]
    assert await actions(subject_uids=[b_uid]) == ["logout", "document.view"]
    assert await actions(subject_uids=[a_uid.upper()]) == ["login.failure", "login.success"]
    assert await actions(subject_uids=["garbage"]) == []
    assert await actions(actor_uids=[doctor_uid], subject_uids=[a_uid]) == ["login.success"]

    newest = await service.search(limit=3)
    assert newest.has_more and len(newest.entries) == 3
    oldest = await service.search(limit=3, older_than=newest.entries[-1].seq)
    assert not oldest.has_more and [e.action for e in oldest.entries] == ["login.success"]
    # The page before the oldest, by sequence number: the newest three again, newest first.
    back = await service.search(limit=3, newer_than=oldest.entries[0].seq)
    assert not back.has_more and back.entries == newest.entries
    entry = newest.entries[1]
    assert (entry.actor_uid, entry.actor_role, entry.subject_uid) == (doctor_uid, "doctor", b_uid)


# Page helpers (no app needed) --------------------------------------------------------------------


def test_times_are_shown_in_the_deployment_time_zone() -> None:
    at = datetime(2026, 10, 2, 9, 5, tzinfo=UTC)
    assert format_local(at, ZoneInfo("Asia/Karachi")) == "2 Oct 2026 14:05"
    assert format_local(at, ZoneInfo("UTC")) == "2 Oct 2026 09:05"


def test_filter_form_parsing() -> None:
    uid = str(uuid.uuid4())
    good = parse_filters(
        {"from": "2026-10-01", "to": "2026-10-02", "email": "A@x.org", "subject": uid}
    )
    assert good.errors == {}
    assert good.query == {
        "date_from": date(2026, 10, 1),
        "date_to": date(2026, 10, 2),
        "actor_email": "a@x.org",
        "subject_uid": uid,
    }
    bad = parse_filters(
        {"from": "2026-10-05", "to": "2026-10-02", "subject": "Ayesha", "action": "x;drop"}
    )
    assert set(bad.errors) == {"to", "subject", "action"}
    assert parse_filters({"subject": "p@x.org"}).query == {"subject_email": "p@x.org"}
    # Pages are found by an event's sequence number; the old ?offset= means the first page.
    assert parse_filters({"after": "57"}).page.after == (57,)
    assert parse_filters({"before": "57", "action": "login"}).page.before == (57,)
    for odd in ({"offset": "50"}, {"after": "-4"}, {"after": "junk"}, {"before": "1.2"}):
        assert parse_filters(odd).page.first


# The admin page ----------------------------------------------------------------------------------


async def test_anonymous_visitor_is_sent_to_sign_in(client: AsyncClient) -> None:
    response = await client.get("/admin/audit", follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"].startswith("/login")
    assert all(row["action"] != "audit.view" for row in await all_rows())


@pytest.mark.parametrize("role", ["patient", "doctor", "coordinator"])
async def test_only_admins_may_read_the_audit_log(client: AsyncClient, role: str) -> None:
    await sign_in(client, await make_person(role))
    response = await client.get("/admin/audit")
    assert response.status_code == 403
    assert "<table" not in response.text


async def test_admin_page_lists_filters_and_pages(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_person("admin", "admin@example.org")
    patient = await make_user("pat<script>@example.org", "patient")
    at = datetime(2026, 10, 2, 9, 5, tzinfo=UTC)
    for n in range(55):
        await record_at(monkeypatch, at, "document.view", subject_uid=patient.uid, object_id=str(n))
    await record_at(monkeypatch, at, "case.update", actor=admin.user, details={"why": "<b>x</b>"})
    monkeypatch.undo()
    await sign_in(client, admin)

    page = await client.get("/admin/audit")
    assert page.status_code == 200
    html = page.text
    assert "<caption>Audit events</caption>" in html
    assert '<th scope="col">Time</th>' in html
    assert "2 Oct 2026 14:05" in html  # Asia/Karachi
    assert "admin@example.org" in html
    assert "pat&lt;script&gt;@example.org" in html and "pat<script>" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    older_link = re.search(r'<a href="(/admin/audit\?after=\d+)" rel="next">Older</a>', html)
    assert older_link and ">Newer<" not in html

    older = await client.get(older_link.group(1))
    assert ">Newer<" in older.text and ">Older<" not in older.text
    assert "<caption>Audit events, older</caption>" in older.text
    # The old offset parameter is ignored: the first page.
    assert ">Newer<" not in (await client.get("/admin/audit", params={"offset": "50"})).text

    filtered = await client.get("/admin/audit", params={"action": "case"})
    assert filtered.text.count("<code>case.update</code>") == 1
    assert "<code>document.view</code>" not in filtered.text

    none = await client.get("/admin/audit", params={"email": "nobody@example.org"})
    assert "No events match these filters" in none.text
    # Emails typed in the filters find the accounts' events (the log itself holds uids).
    by_admin = await client.get(
        "/admin/audit", params={"email": "Admin@Example.org", "action": "case"}
    )
    assert by_admin.text.count("<code>case.update</code>") == 1
    about_patient = await client.get("/admin/audit", params={"subject": "pat<script>@example.org"})
    assert about_patient.text.count("<code>document.view</code>") == 50
    assert "<code>case.update</code>" not in about_patient.text

    bad = await client.get("/admin/audit", params={"from": "yesterday"})
    assert bad.status_code == 200
    assert "Enter the date as year-month-day" in bad.text
    assert "<table" not in bad.text

    fragment = await client.get(
        "/admin/audit", params={"action": "case"}, headers={"hx-request": "true"}
    )
    assert "<table" in fragment.text and "<html" not in fragment.text

    views = [e for e in (await service.search(action="audit.view")).entries]
    assert views and all(e.actor_uid == str(admin.user.uid) for e in views)
    assert await service.verify() == []

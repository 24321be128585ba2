"""Periodic work inside the app (issue 14; core/schedule): each due job runs once across app
processes, a run missed while the app was down happens when it is back, a failing job is
retried with growing waits and reported to admins, and a dead process's lease expires."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core import clock
from core.schedule import service as schedule
from core.schedule.service import Periodic, Scheduler
from core.schedule.tables import ScheduledJob
from tests.support import make_person, post_form, sign_in

ROOT = Path(__file__).resolve().parents[1]
HOUR = timedelta(hours=1)


class Frozen:
    def __init__(self, monkeypatch, now: datetime) -> None:
        self.now = now
        monkeypatch.setattr(clock, "now", lambda: self.now)


async def row(name: str) -> ScheduledJob:
    found = await ScheduledJob.objects().where(ScheduledJob.name == name).first()
    assert found is not None
    return found


async def test_two_app_processes_run_a_due_job_once(settings, tmp_path) -> None:
    """Two processes, each with its own connections, claim the same due job at the same
    moment (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: serialised writes)."""
    out = tmp_path / "runs.txt"
    env = {
        **os.environ,
        "CONSILIUM_DATABASE_URL": settings.database_url or "",
        "CONSILIUM_VAR_DIR": str(settings.var_dir),
        "CONSILIUM_LOG_LEVEL": "ERROR",
    }
    if not settings.database_url:
        env.pop("CONSILIUM_DATABASE_URL")
    for attempt in range(3):  # due again each time: three races
        await ScheduledJob.update({ScheduledJob.next_run_at: clock.now()}).where(
            ScheduledJob.name == "probe"
        )
        start_at = str(time.time() + 2.5)  # both are up and waiting by then
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.schedule_probe", str(out), start_at, cwd=ROOT, env=env
            )
            for _ in range(2)
        ]
        assert [await p.wait() for p in processes] == [0, 0]
        assert len(out.read_text().split()) == attempt + 1  # one more run, not two
    probe = await row("probe")
    assert (probe.runs, probe.last_status, probe.lease_until) == (3, "ok", None)


async def test_a_job_missed_while_the_app_was_down_runs_once_when_it_is_back(
    settings, monkeypatch
) -> None:
    time_now = Frozen(monkeypatch, datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    ran: list[datetime] = []

    async def job() -> int:
        ran.append(clock.now())
        return 0

    scheduler = Scheduler([Periodic("hourly", HOUR, job)])
    assert await scheduler.run_due() == ["hourly"]  # a new job is due at once
    assert (await row("hourly")).next_run_at == time_now.now + HOUR
    time_now.now += timedelta(minutes=59)
    assert await scheduler.run_due() == []
    # Down for five hours: five runs were missed; one runs on start, the next an hour later.
    time_now.now += timedelta(hours=5)
    restarted = Scheduler([Periodic("hourly", HOUR, job)])
    assert await restarted.run_due() == ["hourly"]
    assert await restarted.run_due() == []
    assert len(ran) == 2 and (await row("hourly")).next_run_at == time_now.now + HOUR


async def test_a_failing_job_is_retried_after_growing_waits_and_reported(
    running_app, monkeypatch, client
) -> None:
    time_now = Frozen(monkeypatch, datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    failing = True

    async def job() -> int:
        if failing:
            raise ValueError("patient Ayesha Malik, biopsy")  # never shown or stored
        return 7

    scheduler = Scheduler([Periodic("flaky", HOUR, job)])
    waits = []
    for _ in range(4):
        assert await scheduler.run_due() == ["flaky"]
        found = await row("flaky")
        waits.append(found.next_run_at - time_now.now)
        time_now.now = found.next_run_at
    assert waits == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert (found.failures, found.last_status, found.last_error) == (4, "failed", "ValueError")
    assert "Ayesha" not in found.last_error

    # Admins see it; the page shows the error's kind only.
    running_app.state.scheduler = scheduler
    await sign_in(client, await make_person("admin", "jobs-admin@example.com"))
    page = (await client.get("/admin/jobs")).text
    assert "flaky" in page and "Failed" in page and "4 failures in a row: ValueError" in page
    assert "Ayesha" not in page

    failing = False
    assert await scheduler.run_due() == ["flaky"]
    found = await row("flaky")
    assert (found.failures, found.last_status, found.last_handled) == (0, "ok", 7)
    assert found.next_run_at == time_now.now + HOUR
    assert schedule.retry_after(20, HOUR) == HOUR  # never later than its period


async def test_a_dead_process_lease_expires_and_its_late_record_is_ignored(
    settings, monkeypatch
) -> None:
    time_now = Frozen(monkeypatch, datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    count = 0

    async def job() -> int:
        nonlocal count
        count += 1
        return 1

    first = Scheduler([Periodic("job", HOUR, job, lease=timedelta(minutes=10))])
    second = Scheduler([Periodic("job", HOUR, job, lease=timedelta(minutes=10))])
    await first.ensure_rows()
    token = await first.claim("job")  # then the process dies mid-run
    assert token is not None
    assert await second.run_one("job") is False  # held
    time_now.now += timedelta(minutes=11)
    assert await second.run_one("job") is True and count == 1
    await first._finish("job", token, "TimeoutError", 0)  # too late: ignored
    found = await row("job")
    assert (found.runs, found.last_status, found.failures) == (1, "ok", 0)


async def test_an_admin_runs_a_job_now(running_app, client) -> None:
    scheduler = running_app.state.scheduler
    assert set(scheduler.jobs) == {
        "issue_reports",
        "expire_offers",
        "purge_abandoned_uploads",
        "turnaround_alerts",
        "digests",
        "planner_statistics",
    }
    await scheduler.ensure_rows()
    later = clock.now() + HOUR
    await ScheduledJob.update({ScheduledJob.next_run_at: later}).where(
        ScheduledJob.name == "purge_abandoned_uploads"
    )
    await sign_in(client, await make_person("admin", "run-admin@example.com"))
    response = await post_form(client, "/admin/jobs/purge_abandoned_uploads/run", {})
    assert response.status_code == 303
    assert (await row("purge_abandoned_uploads")).next_run_at <= clock.now()
    response = await post_form(client, "/admin/jobs/no_such_job/run", {})
    assert response.status_code == 404


def test_job_names_are_unique() -> None:
    async def job() -> int:
        return 0

    with pytest.raises(ValueError, match="unique"):
        Scheduler([Periodic("a", HOUR, job), Periodic("a", HOUR, job)])


async def test_a_job_may_wait_before_its_first_run(settings, monkeypatch) -> None:
    time_now = Frozen(monkeypatch, datetime(2026, 12, 7, 9, 0, tzinfo=UTC))

    async def job() -> int:
        return 0

    scheduler = Scheduler([Periodic("later", HOUR, job, first_after=timedelta(minutes=30))])
    assert await scheduler.run_due() == []  # the app's start is not the moment for it
    time_now.now += timedelta(minutes=30)
    assert await scheduler.run_due() == ["later"]

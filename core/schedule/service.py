"""Periodic work inside the app, so that `make run` needs no cron.

Jobs are declared in code (`Periodic`: a name, how often, what to run) and each has a row in
`schedule_job` saying when it is next due. Every app process runs a `Scheduler` from its worker
loop; to run a due job a process first **claims** it: in one transaction it selects the due row
(PostgreSQL: `FOR UPDATE SKIP LOCKED`, so a second process passes over a row the first is
claiming; SQLite: the transaction is IMMEDIATE, so claims are serialised) and writes a lease
with its own token. Only the holder of an unexpired lease runs the job, and only the holder can
record its end; a process that dies mid-run loses its lease when it expires, and the job is due
again.

- A run that works moves `next_run_at` to one period after it finished: runs missed while the
  app was down collapse into one, run as soon as a process is back.
- A run that fails is recorded (the exception's type, never its message: messages can quote
  data) and retried after 30 s, 1 min, 2 min … and never later than its period.
- Admins see every job and can ask for a run now (/admin/jobs).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core import clock, db
from core.errors import NotFound
from core.schedule.tables import ScheduledJob

log = logging.getLogger("consilium.schedule")

FIRST_RETRY = timedelta(seconds=30)


@dataclass(frozen=True)
class Periodic:
    """A job: `run()` does one pass and returns how many items it handled."""

    name: str
    every: timedelta
    run: Callable[[], Awaitable[int]]
    description: str = ""
    lease: timedelta = timedelta(minutes=10)  # longer than a run can take
    first_after: timedelta = timedelta(0)  # how long after the job first appears it first runs


class JobNotFound(NotFound):
    """No job of that name."""


def retry_after(failures: int, every: timedelta) -> timedelta:
    """How long after its `failures`-th failure in a row a job is tried again."""
    return min(every, FIRST_RETRY * 2 ** max(failures - 1, 0))


class Scheduler:
    def __init__(self, jobs: Sequence[Periodic]) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.jobs = {job.name: job for job in jobs}
        self._rows_ready = False

    async def ensure_rows(self) -> None:
        """A row for every declared job (due now when new); rows of jobs no longer declared
        stay, untouched, for the record."""
        known = {row["name"] for row in await ScheduledJob.select(ScheduledJob.name)}
        for name in self.jobs.keys() - known:
            first = clock.now() + self.jobs[name].first_after
            await (
                ScheduledJob.insert(ScheduledJob(name=name, next_run_at=first))
                .on_conflict(target=ScheduledJob.name, action="DO NOTHING")
                .run()
            )
        self._rows_ready = True

    async def claim(self, name: str) -> str | None:
        """Take the lease of a due job: its token, or None when it is not due or another
        process holds it."""
        job = self.jobs[name]
        now = clock.now()
        async with db.transaction():
            query = ScheduledJob.objects().where(
                (ScheduledJob.name == name)
                & (ScheduledJob.next_run_at <= now)
                & (ScheduledJob.lease_until.is_null() | (ScheduledJob.lease_until <= now))
            )
            if db.is_postgres():
                query = query.lock_rows("UPDATE", skip_locked=True)
            row = await query.first()
            if row is None:
                return None
            token = secrets.token_hex(16)
            await ScheduledJob.update(
                {
                    ScheduledJob.lease_until: now + job.lease,
                    ScheduledJob.leased_by: token,
                    ScheduledJob.last_started_at: now,
                }
            ).where(ScheduledJob.id == row.id)
        return token

    async def _finish(self, name: str, token: str, error: str, handled: int) -> None:
        job = self.jobs[name]
        now = clock.now()
        mine = (ScheduledJob.name == name) & (ScheduledJob.leased_by == token)
        async with db.transaction():
            row = await ScheduledJob.objects().where(mine).first()
            if row is None:
                return  # the lease expired and another process took the job: its record wins
            failures = row.failures + 1 if error else 0
            await ScheduledJob.update(
                {
                    ScheduledJob.next_run_at: now
                    + (retry_after(failures, job.every) if error else job.every),
                    ScheduledJob.lease_until: None,
                    ScheduledJob.leased_by: "",
                    ScheduledJob.runs: ScheduledJob.runs + 1,
                    ScheduledJob.failures: failures,
                    ScheduledJob.last_finished_at: now,
                    ScheduledJob.last_status: "failed" if error else "ok",
                    ScheduledJob.last_error: error,
                    ScheduledJob.last_handled: handled,
                }
            ).where(mine)

    async def run_one(self, name: str) -> bool:
        """Run the job if it is due and this process gets it; True when it ran (well or not)."""
        token = await self.claim(name)
        if token is None:
            return False
        error, handled = "", 0
        try:
            handled = await self.jobs[name].run()
        except Exception as exc:
            error = type(exc).__name__
            log.error("job %s failed: %s", name, error)
        await self._finish(name, token, error, handled)
        return True

    async def run_due(self) -> list[str]:
        """Every due job this process could claim, one after the other: their names."""
        if not self._rows_ready:
            await self.ensure_rows()
        ran = []
        for name in self.jobs:
            if await self.run_one(name):
                ran.append(name)
        return ran


@dataclass(frozen=True)
class JobLine:
    """A job as the admin page shows it."""

    row: ScheduledJob
    declared: Periodic | None  # None: no longer declared in this version

    @property
    def period(self) -> str:
        """ "5 minutes", "1 hour", "1 day" """
        seconds = int(self.declared.every.total_seconds()) if self.declared else 0
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            if seconds >= size and seconds % size == 0:
                count = seconds // size
                return f"{count} {unit}{'' if count == 1 else 's'}"
        return f"{seconds} seconds"

    @property
    def running(self) -> bool:
        return self.row.lease_until is not None and self.row.lease_until > clock.now()

    @property
    def status_words(self) -> str:
        if self.declared is None:
            return "No longer used"
        if self.running:
            return "Running"
        return {"never": "Not run yet", "ok": "Worked", "failed": "Failed"}[self.row.last_status]


async def jobs_of(scheduler: Scheduler) -> list[JobLine]:
    await scheduler.ensure_rows()
    rows = await ScheduledJob.objects().order_by(ScheduledJob.name)
    return [JobLine(row, scheduler.jobs.get(row.name)) for row in rows]


async def run_soon(scheduler: Scheduler, name: str) -> datetime:
    """An admin asks for a run now: the job is due at once (the worker is woken by the caller).
    A run in progress is not interrupted."""
    if name not in scheduler.jobs:
        raise JobNotFound
    now = clock.now()
    await ScheduledJob.update({ScheduledJob.next_run_at: now}).where(ScheduledJob.name == name)
    return now

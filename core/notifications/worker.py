"""The in-process outbox worker: `deliver_due` every `outbox_poll_seconds`, or when woken.

Each pass first runs the periodic jobs that are due (core/schedule/service.py).

Before sending it runs its `jobs`: work taken off a request so that the request's answer (and
its timing) stays the same whatever the job finds, e.g. resolving password reset requests.

Several app processes may each run one: claims are leased rows (SKIP LOCKED on PostgreSQL, an
IMMEDIATE transaction on SQLite), so a message is never sent by two of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from core.notifications import service
from core.schedule.service import Scheduler
from core.settings import Settings

log = logging.getLogger("consilium.notifications")

BATCH = 20
# How long stop() lets a pass in hand finish before cancelling it.
STOP_GRACE_SECONDS = 5.0

# A job handles up to `limit` items and returns how many it handled.
Job = Callable[[int], Awaitable[int]]


class OutboxWorker:
    def __init__(
        self, settings: Settings, jobs: Sequence[Job] = (), scheduler: Scheduler | None = None
    ) -> None:
        self._settings = settings
        self._jobs = tuple(jobs)
        self._scheduler = scheduler
        self._worker_id = service.new_worker_id()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopping = False
        service.add_waker(self.wake)
        self._task = asyncio.create_task(self._run(), name="consilium-outbox")

    async def stop(self) -> None:
        service.remove_waker(self.wake)
        task, self._task = self._task, None
        if task is None:
            return
        # First ask: the loop ends after the pass in hand. A task cancelled inside a database
        # call leaves the driver's thread to report to an event loop that may be closed by
        # then ("Event loop is closed" in that thread).
        self._stopping = True
        self._wakeup.set()
        try:
            done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
        except asyncio.CancelledError:
            task.cancel()  # our caller is cancelled: do not leave the worker running
            raise
        if done:
            return
        # Then cancel: safe at any point, as a message claimed but not yet recorded is retried
        # once its lease expires. The flag backs up the cancel: on Python 3.11 a library's
        # wait_for racing its own timeout can swallow a cancellation, and the loop would run on.
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # our caller is being cancelled too: never swallow that

    def wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wakeup.set()
        else:
            loop.call_soon_threadsafe(self._wakeup.set)

    async def _run(self) -> None:
        # Woken after each enqueuing transaction commits; the poll is the backstop for retries
        # and for messages other processes enqueued.
        while not self._stopping:
            self._wakeup.clear()
            await self._drain()
            if not self._stopping:
                await self._sleep(self._settings.outbox_poll_seconds)

    async def _drain(self) -> None:
        """Run the periodic jobs that are due and the jobs, then send until a pass finds less
        than a full batch; never let an error end the loop (or a failing job stop the mail)."""
        if self._scheduler is not None:
            try:
                await self._scheduler.run_due()
            except Exception as exc:
                log.error("schedule pass failed: %s", type(exc).__name__)
        for job in self._jobs:
            try:
                while await job(BATCH) >= BATCH:
                    pass
            except Exception as exc:
                log.error("outbox job failed: %s", type(exc).__name__)
        try:
            while True:
                sent = await service.deliver_due(
                    self._settings, worker_id=self._worker_id, limit=BATCH
                )
                if sent < BATCH:
                    break
        except Exception as exc:
            # The type only: messages of database or SMTP errors can quote addresses or bodies.
            log.error("outbox pass failed: %s", type(exc).__name__)

    async def _sleep(self, seconds: float) -> bool:
        """Wait for a wake or the timeout; True when woken."""
        try:
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()
        except TimeoutError:
            return False
        return True

"""The email outbox against a real SMTP server (aiosmtpd) on both database engines."""

from __future__ import annotations

import asyncio
import email
import logging
import re
import socket
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from litestar import Litestar

from core import db
from core.notifications import service, tables
from core.notifications import worker as worker_module
from core.notifications.service import claim_due, deliver_due, enqueue
from core.notifications.tables import OutboxMessage
from core.notifications.worker import OutboxWorker
from core.settings import Settings

PATIENT = "Ayesha Khan <ayesha@example.org>"
CONTEXT = {"name": "Ayesha"}


# A real SMTP server ---------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class KeepingHandler:
    """Keeps every message; refuses recipients whose address starts with `refuse`."""

    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = KeepingHandler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A server on a free loopback port, not yet started (tests start it: outages are easy)."""
    server = SmtpServer(_free_port())
    yield server
    server.stop()


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    result = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp_server.port, "smtp_security": "none"}
    )
    db.configure_database(result)
    return result


# Helpers --------------------------------------------------------------------------------------


async def _only_row() -> OutboxMessage:
    rows = await OutboxMessage.objects()
    assert len(rows) == 1
    return rows[0]


async def _make_due() -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await OutboxMessage.update({OutboxMessage.next_attempt_at: past}, force=True)


async def _eventually(check: Callable[[], Awaitable[bool] | bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            result = check()
            if await result if isinstance(result, Awaitable) else result:
                return
            await asyncio.sleep(0.02)


# Transactions ---------------------------------------------------------------------------------


async def test_rolled_back_message_is_never_sent(
    smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.start()
    with pytest.raises(RuntimeError, match="undo"):
        async with db.transaction():
            await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
            assert await OutboxMessage.count() == 1  # visible inside the transaction
            raise RuntimeError("undo")

    assert await OutboxMessage.count() == 0
    assert await deliver_due(smtp_settings) == 0
    assert smtp_server.received == []


async def test_committed_message_is_delivered_once_with_headers(
    smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.start()
    async with db.transaction():
        # A caller cannot steer links elsewhere: base_url always comes from the settings.
        await enqueue(
            to=PATIENT,
            template="test_message",
            context={**CONTEXT, "base_url": "https://evil.example"},
        )

    assert await deliver_due(smtp_settings) == 1
    assert await deliver_due(smtp_settings) == 0

    [received] = smtp_server.received
    assert received.rcpt_tos == ["ayesha@example.org"]
    assert received.mail_from == "no-reply@consilium.invalid"
    message = received.message
    assert message["From"] == smtp_settings.mail_from
    assert message["To"] == PATIENT
    assert message["Subject"] == "Test message for Ayesha"
    assert message["Date"].datetime.tzinfo is not None
    assert re.fullmatch(r"<outbox\.\d+\.\d+@consilium\.invalid>", message["Message-ID"])
    assert not message.is_multipart()  # plain text only, no HTML part
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("Hello Ayesha,\n")
    assert "Sign in at http://testserver.local/login" in body
    assert "evil.example" not in body
    assert "Consilium Hospital" in body

    row = await _only_row()
    assert row.status == tables.SENT
    assert row.attempts == 0
    assert row.sent_at is not None
    assert row.claimed_by is None
    assert row.body == ""  # links do not outlive delivery in the database


async def test_enqueue_rejects_a_bad_recipient(settings: Settings) -> None:
    for bad in ("not-an-address", "a@example.org, b@example.org", "a@example.org\r\nBcc: b@x.org"):
        with pytest.raises(ValueError):
            await enqueue(to=bad, template="test_message", context=CONTEXT)
    assert await OutboxMessage.count() == 0


async def test_template_needs_a_subject_line(settings: Settings) -> None:
    with pytest.raises(ValueError, match="bad email template name"):
        await enqueue(to=PATIENT, template="../base", context={})
    with pytest.raises(ValueError, match="empty subject"):
        service.render_email("_layout", {}, settings)
    # A line break in a value cannot smuggle a header into the message.
    with pytest.raises(ValueError, match="must start with 'Subject: …'"):
        service.render_email("test_message", {"name": "x\nBcc: eve@example.org"}, settings)


# Failures and retries ----------------------------------------------------------------------


async def test_outage_keeps_message_and_retries_later_exactly_once(
    smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
    before = datetime.now(UTC)

    assert await deliver_due(smtp_settings) == 0  # nothing listens on the port

    row = await _only_row()
    assert row.status == tables.PENDING
    assert row.attempts == 1
    assert row.claimed_by is None
    # First retry after 30 s less at most 10 % jitter.
    assert before + timedelta(seconds=26) < row.next_attempt_at < before + timedelta(seconds=31)
    assert row.last_error == "SMTPConnectError"
    assert "@" not in row.last_error

    smtp_server.start()
    assert await deliver_due(smtp_settings) == 0  # not due yet
    assert smtp_server.received == []

    await _make_due()
    assert await deliver_due(smtp_settings) == 1
    assert await deliver_due(smtp_settings) == 0
    assert len(smtp_server.received) == 1
    row = await _only_row()
    assert (row.status, row.attempts, row.last_error) == (tables.SENT, 1, "")


async def test_refused_recipient_is_retried_without_blocking_others(
    smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.start()
    await enqueue(to="refuse@example.org", template="test_message", context=CONTEXT)
    await enqueue(to="ok@example.org", template="test_message", context=CONTEXT)

    assert await deliver_due(smtp_settings) == 1

    assert [r.rcpt_tos for r in smtp_server.received] == [["ok@example.org"]]
    refused = await OutboxMessage.objects().where(OutboxMessage.to_address == "refuse@example.org")
    assert refused[0].status == tables.PENDING
    assert refused[0].attempts == 1
    assert refused[0].last_error == "SMTPRecipientsRefused 550"


def test_retry_delay_doubles_up_to_the_maximum(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path, outbox_retry_max_seconds=600)  # type: ignore[call-arg]
    for attempts, base in [(1, 30), (2, 60), (3, 120), (5, 480), (6, 600), (500, 600)]:
        seconds = service.retry_delay(settings, attempts).total_seconds()
        assert base * 0.9 <= seconds <= base


async def test_deliver_due_refuses_to_run_inside_a_transaction(settings: Settings) -> None:
    # Sending from inside a transaction that may roll back would send the message twice.
    async with db.transaction():
        with pytest.raises(RuntimeError, match="inside a transaction"):
            await deliver_due(settings)


# Concurrency and crashed workers -------------------------------------------------------------


async def test_concurrent_passes_send_each_message_once(
    smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.start()
    addresses = [f"patient{n}@example.org" for n in range(6)]
    for address in addresses:
        await enqueue(to=address, template="test_message", context=CONTEXT)

    sent = await asyncio.gather(
        deliver_due(smtp_settings, worker_id="worker-a", limit=4),
        deliver_due(smtp_settings, worker_id="worker-b", limit=4),
    )

    assert sum(sent) == 6
    assert max(sent) <= 4
    delivered = sorted(r.rcpt_tos[0] for r in smtp_server.received)
    assert delivered == sorted(addresses)
    assert await OutboxMessage.count().where(OutboxMessage.status == tables.SENT) == 6


async def test_claim_of_a_crashed_worker_expires(
    smtp_settings: Settings, smtp_server: SmtpServer
) -> None:
    smtp_server.start()
    await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
    assert len(await claim_due("crashed-worker", 20)) == 1

    assert await deliver_due(smtp_settings) == 0  # still leased to the crashed worker

    expired = datetime.now(UTC) - timedelta(seconds=1)
    await OutboxMessage.update({OutboxMessage.claimed_until: expired}, force=True)
    assert await deliver_due(smtp_settings) == 1
    assert len(smtp_server.received) == 1


# The demo sink ------------------------------------------------------------------------------


async def test_without_smtp_host_mail_is_written_to_var_mail(settings: Settings) -> None:
    settings = settings.model_copy(update={"smtp_host": None})
    db.configure_database(settings)
    await enqueue(to=PATIENT, template="test_message", context=CONTEXT)

    assert await deliver_due(settings) == 1

    folder = settings.var_dir / "mail"
    [path] = folder.iterdir()
    assert re.fullmatch(r"\d{8}T\d{12}Z-\d+\.eml", path.name)
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    # Readable as is: the link is not broken by quoted-printable line wrapping.
    assert b"Sign in at http://testserver.local/login to see it." in raw
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == "Test message for Ayesha"
    assert message["To"] == PATIENT
    assert (await _only_row()).status == tables.SENT


# The worker --------------------------------------------------------------------------------


async def test_worker_in_app_lifespan_delivers_without_help(running_app: Litestar) -> None:
    settings: Settings = running_app.state.settings
    folder = settings.var_dir / "mail"
    await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
    await _eventually(lambda: folder.is_dir() and any(folder.iterdir()))
    [path] = folder.iterdir()
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Test message for Ayesha"


async def test_worker_survives_errors_and_logs_only_their_type(
    smtp_settings: Settings,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    smtp_server.start()
    real_deliver_due = service.deliver_due
    calls = 0

    async def flaky_deliver_due(*args: object, **kwargs: object) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("ayesha@example.org: private details")
        return await real_deliver_due(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "deliver_due", flaky_deliver_due)
    logger = logging.getLogger("consilium.notifications")
    logger.addHandler(caplog.handler)
    worker = OutboxWorker(smtp_settings)
    try:
        await worker.start()
        await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
        await _eventually(lambda: len(smtp_server.received) == 1)
    finally:
        await worker.stop()
        logger.removeHandler(caplog.handler)

    assert calls >= 2
    assert "outbox pass failed: RuntimeError" in caplog.text
    assert "ayesha" not in caplog.text
    assert len(smtp_server.received) == 1


async def test_worker_stop_is_clean_and_enqueue_works_without_worker(settings: Settings) -> None:
    worker = OutboxWorker(settings)
    await worker.start()
    await worker.stop()
    await worker.stop()  # idempotent
    worker.wake()  # harmless once stopped
    await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
    assert await OutboxMessage.count() == 1


async def test_worker_stops_even_when_a_library_swallows_the_cancellation(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python 3.11's wait_for can lose a cancellation that races its own timeout; a full-suite
    # run once hung for minutes in stop() that way.
    inside = asyncio.Event()

    async def swallowing_deliver_due(*args: object, **kwargs: object) -> int:
        inside.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
        return 0

    monkeypatch.setattr(service, "deliver_due", swallowing_deliver_due)
    monkeypatch.setattr(worker_module, "STOP_GRACE_SECONDS", 0.1)
    worker = OutboxWorker(settings)
    await worker.start()
    await asyncio.wait_for(inside.wait(), 5)
    async with asyncio.timeout(5):
        await worker.stop()


async def test_stopping_lets_the_pass_in_hand_finish(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A task cancelled inside a database call leaves the driver's thread to report to a loop
    # that may be closed by then: stop() asks first and cancels only after a grace period.
    inside, finished = asyncio.Event(), asyncio.Event()

    async def slow_deliver_due(*args: object, **kwargs: object) -> int:
        inside.set()
        await asyncio.sleep(0.3)
        finished.set()
        return 0

    monkeypatch.setattr(service, "deliver_due", slow_deliver_due)
    worker = OutboxWorker(settings)
    await worker.start()
    await asyncio.wait_for(inside.wait(), 5)
    await worker.stop()
    assert finished.is_set()


async def test_stopping_the_worker_does_not_swallow_its_callers_cancellation(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def idle_deliver_due(*args: object, **kwargs: object) -> int:
        # No database call to cut short: a cancelled query's driver thread would outlive the
        # test's event loop.
        await asyncio.sleep(0.5)
        return 0

    monkeypatch.setattr(service, "deliver_due", idle_deliver_due)
    worker = OutboxWorker(settings)
    await worker.start()

    async def stop_and_go_on() -> str:
        await worker.stop()
        return "went on"

    task = asyncio.create_task(stop_and_go_on())
    await asyncio.sleep(0)  # stop() is now waiting for the worker task
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_workers_are_woken_only_after_the_commit(settings: Settings) -> None:
    calls: list[int] = []

    def waker() -> None:
        calls.append(1)

    service.add_waker(waker)
    try:
        async with db.transaction():
            await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
            assert calls == []  # the row is not visible to other connections yet
        assert calls == [1]
        with pytest.raises(RuntimeError):
            async with db.transaction():
                await enqueue(to=PATIENT, template="test_message", context=CONTEXT)
                raise RuntimeError("roll back")
        assert calls == [1]  # a rolled-back message wakes nobody
    finally:
        service.remove_waker(waker)

"""Transactional email outbox (docs/security.md 24).

`enqueue` renders an email and inserts it in the caller's open transaction, so the email exists
if and only if the change it reports was committed. `deliver_due` (run by `OutboxWorker`) claims
due messages under a lease, sends them over SMTP (or into var/mail/ when no SMTP host is set)
and records the outcome; a failure is retried with exponential backoff and never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from core import clock, db
from core.context import settings as current_settings
from core.notifications.tables import PENDING, SENT, OutboxMessage
from core.settings import Settings

log = logging.getLogger("consilium.notifications")

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")

# Upper bound for one message (connect, TLS, login, send); a claim's lease covers a whole batch.
SEND_TIMEOUT_SECONDS = 20.0
LEASE_MARGIN_SECONDS = 30.0
FIRST_RETRY_SECONDS = 30

# SMTP errors about one message; any other SMTP or network error means the server (or its
# configuration) is unusable, so the rest of the batch is deferred without trying it.
_PER_MESSAGE_ERRORS = (
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPRecipientRefused,
    aiosmtplib.SMTPDataError,
)

_wakers: set[Callable[[], None]] = set()


# Enqueueing ---------------------------------------------------------------------------------


async def enqueue(*, to: str, template: str, context: dict[str, Any]) -> None:
    """Queue `templates/email/<template>.txt` for `to`, inside the caller's transaction.

    No transaction of its own: inside `db.transaction()` the row commits or rolls back with
    the caller's change. The body must not carry medical details (docs/security.md 24).
    """
    settings = current_settings()
    subject, body = render_email(template, context, settings)
    now = clock.now()
    # Building the message now rejects a bad address or subject in the caller, not the worker.
    build_message(settings, message_id=0, created_at=now, to=to, subject=subject, body=body)
    row = OutboxMessage(
        to_address=to,
        subject=subject,
        body=body,
        created_at=now,
        next_attempt_at=now,
        status=PENDING,
    )
    await OutboxMessage.insert(row)
    # Woken after the commit, so the worker finds the row on its first look.
    db.on_commit(wake_workers)


def render_email(template: str, context: dict[str, Any], settings: Settings) -> tuple[str, str]:
    """Render a text template whose first line is `Subject: …`, then a blank line, the body."""
    if not _TEMPLATE_NAME.fullmatch(template):
        raise ValueError(f"bad email template name {template!r}")
    # Settings win: links must come from base_url, never from anything a request supplied.
    values = {**context, "base_url": settings.base_url, "hospital_name": settings.hospital_name}
    text = _environment().get_template(f"email/{template}.txt").render(values)
    head, blank, body = text.replace("\r\n", "\n").lstrip("\n").partition("\n\n")
    if not blank or "\n" in head or not head.startswith("Subject:"):
        raise ValueError(f"email/{template}.txt must start with 'Subject: …' and a blank line")
    subject = head.removeprefix("Subject:").strip()
    if not subject:
        raise ValueError(f"email/{template}.txt renders an empty subject")
    return subject, body.strip("\n") + "\n"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # Plain text, never HTML: escaping would garble it, and there is no HTML part to protect.
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=False,  # noqa: S701
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def build_message(
    settings: Settings, *, message_id: int, created_at: datetime, to: str, subject: str, body: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = _single_recipient(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(created_at.astimezone(UTC))
    # Stable across retries, so a receiver can discard a copy sent twice after a crash.
    stamp = int(created_at.timestamp() * 1_000_000)
    message["Message-ID"] = f"<outbox.{message_id}.{stamp}@{_mail_domain(settings)}>"
    message.set_content(body, cte=_transfer_encoding(body))
    return message


def _single_recipient(to: str) -> str:
    try:
        header = EmailMessage()
        header["To"] = to
        recipients = header["To"].addresses
    except (ValueError, IndexError) as exc:  # the parser raises both on malformed input
        raise ValueError("malformed recipient address") from exc
    if len(recipients) != 1 or not recipients[0].username or not recipients[0].domain:
        raise ValueError("an outbox message goes to exactly one email address")
    return to


def _transfer_encoding(body: str) -> str:
    # Plain 7bit keeps links whole for someone reading a raw .eml; quoted-printable would break
    # them at 76 characters. Needed anyway for non-ASCII text or overlong lines.
    fits = body.isascii() and all(len(line) <= 998 for line in body.splitlines())
    return "7bit" if fits else "quoted-printable"


def _mail_domain(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1].rpartition("@")[2] or "consilium.invalid"


# Waking the worker --------------------------------------------------------------------------


def add_waker(callback: Callable[[], None]) -> None:
    _wakers.add(callback)


def remove_waker(callback: Callable[[], None]) -> None:
    _wakers.discard(callback)


def local_workers() -> int:
    """How many workers run in this process (a test delivering by hand defers to them)."""
    return len(_wakers)


def wake_workers() -> None:
    """Have every worker of this process look for work now (call it after a commit)."""
    for callback in list(_wakers):
        callback()


# Delivering ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    to_address: str
    subject: str
    body: str
    attempts: int
    created_at: datetime


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def deliver_due(settings: Settings, *, worker_id: str | None = None, limit: int = 20) -> int:
    """One pass: claim up to `limit` due messages, send them, record each outcome.

    Returns how many were sent. Must run outside any transaction: the claim has to commit
    before sending so that other workers skip the claimed rows.
    """
    if db.current_engine().current_transaction.get() is not None:
        raise RuntimeError("deliver_due must not run inside a transaction")
    worker_id = worker_id or new_worker_id()
    claimed = await claim_due(worker_id, limit)
    sent = 0
    server_error: Exception | None = None
    for message in claimed:
        error = server_error or await _send(settings, message)
        if error is None:
            await _mark_sent(message)
            sent += 1
            continue
        await _mark_failed(settings, message, worker_id, describe_error(error))
        if _is_server_error(error):
            server_error = error
    return sent


def _is_server_error(error: Exception) -> bool:
    return isinstance(error, OSError | aiosmtplib.SMTPException) and not isinstance(
        error, _PER_MESSAGE_ERRORS
    )


async def claim_due(worker_id: str, limit: int) -> list[Claimed]:
    now = clock.now()
    lease_until = now + timedelta(seconds=SEND_TIMEOUT_SECONDS * limit + LEASE_MARGIN_SECONDS)
    if db.is_postgres():
        rows = await _claim_postgres(worker_id, limit, now, lease_until)
    else:
        rows = await _claim_sqlite(worker_id, limit, now, lease_until)
    return [Claimed(**{field: row[field] for field in _CLAIMED_FIELDS}) for row in rows]


_CLAIMED_FIELDS = ("id", "to_address", "subject", "body", "attempts", "created_at")

# One statement: rows locked by another worker's claim are skipped, never sent twice.
_CLAIM_SQL = """
UPDATE notification_outbox SET claimed_by = {}, claimed_until = {}
WHERE id IN (
    SELECT id FROM notification_outbox
    WHERE status = {} AND next_attempt_at <= {}
      AND (claimed_until IS NULL OR claimed_until < {})
    ORDER BY next_attempt_at, id
    LIMIT {}
    FOR UPDATE SKIP LOCKED
)
RETURNING id, to_address, subject, body, attempts, created_at
"""


async def _claim_postgres(
    worker_id: str, limit: int, now: datetime, lease_until: datetime
) -> list[dict[str, Any]]:
    rows = await OutboxMessage.raw(_CLAIM_SQL, worker_id, lease_until, PENDING, now, now, limit)
    return sorted(rows, key=lambda row: row["id"])


async def _claim_sqlite(
    worker_id: str, limit: int, now: datetime, lease_until: datetime
) -> list[dict[str, Any]]:
    due = (
        (OutboxMessage.status == PENDING)
        & (OutboxMessage.next_attempt_at <= now)
        & (OutboxMessage.claimed_until.is_null() | (OutboxMessage.claimed_until < now))
    )
    # A plain read first: polling an empty outbox must not take SQLite's write lock each time.
    if not await OutboxMessage.exists().where(due):
        return []
    columns = [getattr(OutboxMessage, field) for field in _CLAIMED_FIELDS]
    # IMMEDIATE: a second worker waits for this claim to commit, then sees the lease.
    async with db.transaction():
        rows = await (
            OutboxMessage.select(*columns)
            .where(due)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
        )
        if rows:
            await OutboxMessage.update(
                {OutboxMessage.claimed_by: worker_id, OutboxMessage.claimed_until: lease_until}
            ).where(OutboxMessage.id.is_in([row["id"] for row in rows]))
    return rows


async def _send(settings: Settings, message: Claimed) -> Exception | None:
    """Send one message; None when it went out, else the error (recorded, never raised)."""
    try:
        email = build_message(
            settings,
            message_id=message.id,
            created_at=message.created_at,
            to=message.to_address,
            subject=message.subject,
            body=message.body,
        )
        if settings.smtp_host:
            await _send_smtp(settings, email)
        else:
            await asyncio.to_thread(write_eml, settings.var_dir / "mail", email, message.id)
    except Exception as exc:
        return exc
    return None


async def _send_smtp(settings: Settings, email: EmailMessage) -> None:
    login: dict[str, str] = {}
    if settings.smtp_username:
        login = {"username": settings.smtp_username, "password": settings.smtp_password or ""}
    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
        await aiosmtplib.send(
            email,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            use_tls=settings.smtp_security == "tls",
            # True makes STARTTLS mandatory: never fall back to plain text silently.
            start_tls=settings.smtp_security == "starttls",
            timeout=SEND_TIMEOUT_SECONDS,
            **login,
        )


def write_eml(folder: Path, email: EmailMessage, message_id: int) -> Path:
    """The demo sink: one RFC 5322 file per message, readable only by the service's user."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{clock.now():%Y%m%dT%H%M%S%fZ}-{message_id}.eml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(email.as_bytes(policy=policy.SMTP))
    return path


def describe_error(exc: BaseException) -> str:
    """Class name and SMTP code only: server replies may echo addresses back."""
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        code = exc.recipients[0].code
    name = type(exc).__name__
    return f"{name} {code}" if isinstance(code, int) else name


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """30 s, 60 s, 120 s … capped, less up to 10 % so failed messages do not retry in step."""
    base = min(FIRST_RETRY_SECONDS * 2 ** min(attempts - 1, 30), settings.outbox_retry_max_seconds)
    return timedelta(seconds=base * random.uniform(0.9, 1.0))


async def _mark_sent(message: Claimed) -> None:
    await OutboxMessage.update(
        {
            OutboxMessage.status: SENT,
            OutboxMessage.sent_at: clock.now(),
            # Delivered: links in the body (resets, invites) should not outlive delivery here.
            OutboxMessage.body: "",
            OutboxMessage.claimed_by: None,
            OutboxMessage.claimed_until: None,
            OutboxMessage.last_error: "",
        }
    ).where(OutboxMessage.id == message.id)


async def _mark_failed(settings: Settings, message: Claimed, worker_id: str, error: str) -> None:
    log.warning("outbox message %s not sent: %s", message.id, error)
    await OutboxMessage.update(
        {
            OutboxMessage.attempts: OutboxMessage.attempts + 1,
            OutboxMessage.next_attempt_at: clock.now()
            + retry_delay(settings, message.attempts + 1),
            OutboxMessage.last_error: error[:200],
            OutboxMessage.claimed_by: None,
            OutboxMessage.claimed_until: None,
        }
    ).where((OutboxMessage.id == message.id) & (OutboxMessage.claimed_by == worker_id))

"""The audit log: record security-relevant events, verify the chain, search it.

Every row carries `hash = HMAC-SHA256(key, prev_hash ‖ canonical JSON of the row)`, where the
key is derived from the deployment secret and the first row's `prev_hash` is 64 zeros. Someone
who can write to the database but does not hold the secret cannot alter, remove or reorder a
row without `verify()` noticing. (Removing rows from the *end* of the log leaves an intact,
shorter chain; compare the row count `verify_chain()` reports with an earlier one to catch it.)
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from hashlib import sha256
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from core import clock, context, db
from core.audit.tables import AuditEvent
from core.ids import parse_uuid
from core.keys import derive_key


class Actor(Protocol):
    """Who did it: a signed-in account (core.accounts.tables.User has these). The audit log is
    below accounts, so it names only what it stores."""

    uid: Any
    role: str


GENESIS = "0" * 64
# Any constant works; it only has to be the same in every process writing the log.
ADVISORY_LOCK_KEY = 0x0A0D17C4A1

# The columns covered by the MAC, besides prev_hash (which is prepended).
CHAINED_FIELDS = (
    "seq",
    "at",
    "actor_uid",
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "case_id",
    "subject_uid",
    "outcome",
    "ip",
    "details",
)

ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
OUTCOME_RE = re.compile(r"^[a-z][a-z_]*$")
# Keys that would put personal or medical data in the log; refused outright.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {
        "address",
        "date_of_birth",
        "diagnosis",
        "dob",
        "email",
        "file_name",
        "filename",
        "full_name",
        "name",
        "notes",
        "password",
        "phone",
    }
)
MAX_DETAILS_CHARS = 2000
MAX_ID_CHARS = 64
MAX_PAGE_SIZE = 500


class AuditError(ValueError):
    """`record()` was called with a value the log must not hold."""


@dataclass(frozen=True)
class AuditEntry:
    """One event as stored (accounts are named by uid; the admin page looks their emails up)."""

    seq: int
    at: datetime
    actor_uid: str | None
    actor_role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    case_id: str | None
    subject_uid: str | None
    outcome: str
    ip: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class SearchPage:
    entries: list[AuditEntry]  # newest first
    has_more: bool  # more events exist beyond this page, in the direction searched
    limit: int


@dataclass
class VerifyReport:
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


# Recording ------------------------------------------------------------------------------------


async def record(
    action: str,
    *,
    actor: Actor | None = None,
    actor_role: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    case_id: str | None = None,
    subject_uid: str | uuid.UUID | None = None,
    outcome: str = "success",
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event to the audit log.

    `actor` is the signed-in account (None for the system or an anonymous visitor); only its uid
    and role are stored. `subject_uid` is the patient or user the event is about, so patients
    can see who opened their records and admins can filter by patient.

    **No PHI or personal data in `details`**: no names, emails, phone numbers, file names,
    diagnoses or form contents — ids, counts, field names and short codes only. Keys that would
    obviously carry such data (see `FORBIDDEN_DETAIL_KEYS`) raise `AuditError`, as do nested
    structures and details longer than 2,000 characters.

    Runs inside the caller's transaction when there is one (the event then commits or rolls
    back with the change it describes), else in its own. On PostgreSQL it holds the chain's
    advisory lock until that transaction ends, so call it as the last step of a transaction.
    """
    row: dict[str, Any] = {
        "actor_uid": str(actor.uid) if actor is not None else None,
        "actor_role": actor_role or (actor.role if actor is not None else None),
        "action": _check_action(action),
        "object_type": _short(object_type, "object_type"),
        "object_id": _short(object_id, "object_id"),
        "case_id": _short(case_id, "case_id"),
        "subject_uid": _normalise_uid(subject_uid),
        "outcome": _check_outcome(outcome),
        "ip": _normalise_ip(ip),
        "details": canonical_details(details),
    }
    key = _chain_key()
    async with db.transaction():
        await _lock_chain()
        last = await _last_link()
        row["seq"] = last[0] + 1
        row["at"] = clock.now()  # taken under the lock, so time follows seq
        row["prev_hash"] = last[1]
        row["hash"] = chain_mac(key, last[1], row)
        await AuditEvent.insert(AuditEvent(**row))


async def _lock_chain() -> None:
    # SQLite needs nothing: db.transaction() is IMMEDIATE, which already serialises writers.
    if db.is_postgres():
        await AuditEvent.raw("SELECT pg_advisory_xact_lock({})", ADVISORY_LOCK_KEY)


async def _last_link() -> tuple[int, str]:
    last = (
        await AuditEvent.select(AuditEvent.seq, AuditEvent.hash)
        .order_by(AuditEvent.seq, ascending=False)
        .first()
    )
    return (last["seq"], last["hash"]) if last else (0, GENESIS)


async def record_about(action: str, about: Any, *, case: Any = None, **fields: Any) -> None:
    """One event about one object (a case, a document, a payment, a provider link…), of a case:
    the object's type is the action's first word ("document.upload" → "document"), its id is
    the object's uid (`about` is the row, or its uid); `case` is the case's row or uid. The
    other fields are `record`'s."""
    await record(
        action,
        object_type=action.split(".", 1)[0],
        object_id=str(getattr(about, "uid", about)),
        case_id=None if case is None else str(getattr(case, "uid", case)),
        **fields,
    )


def _check_action(action: str) -> str:
    if len(action) > MAX_ID_CHARS or not ACTION_RE.match(action):
        raise AuditError(f"bad audit action {action!r}: use dotted lower case, e.g. login.failure")
    return action


def _check_outcome(outcome: str) -> str:
    if len(outcome) > 20 or not OUTCOME_RE.match(outcome):
        raise AuditError(f"bad audit outcome {outcome!r}: e.g. success, failure, denied")
    return outcome


def _short(value: object, name: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        raise AuditError(f"{name} longer than {MAX_ID_CHARS} characters")
    return text


def _normalise_uid(value: str | uuid.UUID | None) -> str | None:
    if value is None:
        return None
    parsed = parse_uuid(value)
    if parsed is None:
        raise AuditError(f"subject_uid is not a UUID: {value!r}")
    return str(parsed)


def _normalise_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        # Test clients and some proxies report names; keep them, bounded.
        return value[:45]


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """The details as sorted, compact JSON; refuses shapes that invite PHI."""
    details = dict(details or {})
    for key, value in details.items():
        if not isinstance(key, str):
            raise AuditError("audit detail keys must be strings")
        if key.lower() in FORBIDDEN_DETAIL_KEYS:
            raise AuditError(f"audit details must not hold personal data ({key!r})")
        items = value if isinstance(value, list | tuple) else [value]
        if not all(_is_scalar(item) for item in items):
            raise AuditError(f"audit detail {key!r} must be a scalar or a list of scalars")
    text = json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    if len(text) > MAX_DETAILS_CHARS:
        raise AuditError(f"audit details longer than {MAX_DETAILS_CHARS} characters")
    return text


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | uuid.UUID)


# The chain ------------------------------------------------------------------------------------


def _chain_key() -> bytes:
    return derive_key(context.settings(), "audit-chain")


def format_chain_time(at: datetime) -> str:
    """The one spelling of `at` that goes into the MAC (both engines return it identically)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_row(row: Mapping[str, Any]) -> bytes:
    payload = {name: row[name] for name in CHAINED_FIELDS}
    payload["at"] = format_chain_time(row["at"])
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_mac(key: bytes, prev_hash: str, row: Mapping[str, Any]) -> str:
    return hmac.new(key, prev_hash.encode() + canonical_row(row), sha256).hexdigest()


async def verify() -> list[str]:
    """Walk the whole chain; return one readable line per problem (empty: intact)."""
    return (await verify_chain()).problems


async def verify_chain(batch_size: int = 1000) -> VerifyReport:
    """Like `verify()`, also counting the rows; reads in batches so memory stays flat."""
    key = _chain_key()
    report = VerifyReport()
    prev_seq, prev_hash = 0, GENESIS
    while True:
        batch = (
            await AuditEvent.select()
            .where(AuditEvent.seq > prev_seq)
            .order_by(AuditEvent.seq)
            .limit(batch_size)
        )
        if not batch:
            return report
        for row in batch:
            report.problems.extend(_check_link(key, row, prev_seq, prev_hash))
            report.rows += 1
            prev_seq, prev_hash = row["seq"], row["hash"]


def _check_link(key: bytes, row: Mapping[str, Any], prev_seq: int, prev_hash: str) -> list[str]:
    seq = row["seq"]
    problems = []
    if seq != prev_seq + 1:
        problems.append(
            f"row {seq}: rows {prev_seq + 1}–{seq - 1} are missing (deleted?)"
            if seq > prev_seq + 2
            else f"row {seq}: row {prev_seq + 1} is missing (deleted?)"
        )
    if not hmac.compare_digest(str(row["prev_hash"]), prev_hash):
        before = f"row {prev_seq}" if prev_seq else "the start of the log"
        problems.append(
            f"row {seq}: does not follow {before} (previous-hash mismatch: rows deleted, "
            "inserted or reordered)"
        )
    if not hmac.compare_digest(str(row["hash"]), chain_mac(key, str(row["prev_hash"]), row)):
        problems.append(f"row {seq}: contents do not match its MAC (row altered)")
    return problems


# Searching ------------------------------------------------------------------------------------


async def search(
    *,
    date_from: date | datetime | None = None,
    date_to: date | datetime | None = None,
    actor_uids: list[str] | None = None,
    action: str | None = None,
    subject_uids: list[str | uuid.UUID] | None = None,
    limit: int = 100,
    older_than: int | None = None,
    newer_than: int | None = None,
) -> SearchPage:
    """Events matching every given filter, newest first, `limit` at a time.

    Dates are whole days in the deployment's time zone, both ends included (a datetime is
    taken as an exact bound, `date_to` exclusive). `action` matches itself and its dotted
    children ("login" finds "login.success" and "login.failure"). `actor_uids` and
    `subject_uids` (None: any) match any of the accounts given; an empty list matches nothing.

    Pages are found by sequence number, never by offset: `older_than=seq` gives the newest
    events before that one (the next page of the list), `newer_than=seq` the oldest ones after
    it (the page before), still newest first. `has_more`: events exist beyond the page in the
    direction searched. One query, on the primary key's order, however deep the page.
    """
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    empty = SearchPage(entries=[], has_more=False, limit=limit)
    backwards = newer_than is not None
    query = AuditEvent.select().order_by(AuditEvent.seq, ascending=backwards)
    if backwards:
        query = query.where(AuditEvent.seq > newer_than)
    elif older_than is not None:
        query = query.where(AuditEvent.seq < older_than)
    if date_from is not None:
        query = query.where(AuditEvent.at >= _day_start(date_from))
    if date_to is not None:
        query = query.where(AuditEvent.at < _day_end(date_to))
    if action:
        query = query.where((AuditEvent.action == action) | AuditEvent.action.like(f"{action}.%"))
    for column, uids in (
        (AuditEvent.actor_uid, actor_uids),
        (AuditEvent.subject_uid, subject_uids),
    ):
        if uids is None:
            continue
        wanted = [uid for uid in (_normalise_or_none(value) for value in uids) if uid]
        if not wanted:
            return empty
        query = query.where(column.is_in(wanted))
    rows = await query.limit(limit + 1)
    entries = [_entry(row) for row in rows[:limit]]
    if backwards:
        entries.reverse()
    return SearchPage(entries=entries, has_more=len(rows) > limit, limit=limit)


def _zone() -> ZoneInfo:
    return ZoneInfo(context.settings().time_zone)


def _day_start(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time.min, tzinfo=_zone()).astimezone(UTC)


def _day_end(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return _day_start(value + timedelta(days=1))


def _normalise_or_none(value: str | uuid.UUID) -> str | None:
    try:
        return _normalise_uid(value)
    except AuditError:
        return None


def _entry(row: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"],
        at=row["at"],
        actor_uid=row["actor_uid"],
        actor_role=row["actor_role"],
        action=row["action"],
        object_type=row["object_type"],
        object_id=row["object_id"],
        case_id=row["case_id"],
        subject_uid=row["subject_uid"],
        outcome=row["outcome"],
        ip=row["ip"],
        details=_parse_details(row["details"]),
    )


def _parse_details(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

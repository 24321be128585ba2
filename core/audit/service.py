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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from hashlib import sha256
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from core import db, runtime
from core.audit.tables import AuditEvent
from core.security import derive_key

if TYPE_CHECKING:
    from core.accounts.tables import User

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
    """One event as the admin page shows it (emails joined from the accounts table)."""

    seq: int
    at: datetime
    actor_uid: str | None
    actor_email: str | None
    actor_role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    case_id: str | None
    subject_uid: str | None
    subject_email: str | None
    outcome: str
    ip: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class SearchPage:
    entries: list[AuditEntry]
    has_more: bool  # older events exist beyond this page
    limit: int
    offset: int


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
    actor: User | None = None,
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

    `actor` is the signed-in `User` (None for the system or an anonymous visitor); only its uid
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
        row["at"] = _now()  # taken under the lock, so time follows seq
        row["prev_hash"] = last[1]
        row["hash"] = chain_mac(key, last[1], row)
        await AuditEvent.insert(AuditEvent(**row))


def _now() -> datetime:
    return datetime.now(UTC)


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
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise AuditError(f"subject_uid is not a UUID: {value!r}") from None


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
    return derive_key(runtime.settings(), "audit-chain")


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
    actor_email: str | None = None,
    action: str | None = None,
    subject_uid: str | uuid.UUID | None = None,
    subject_email: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> SearchPage:
    """Events matching every given filter, newest first.

    Dates are whole days in the deployment's time zone, both ends included (a datetime is
    taken as an exact bound, `date_to` exclusive). `action` matches itself and its dotted
    children ("login" finds "login.success" and "login.failure"). Emails match exactly
    (they are stored normalised).
    """
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    offset = max(0, offset)
    empty = SearchPage(entries=[], has_more=False, limit=limit, offset=offset)
    query = AuditEvent.select().order_by(AuditEvent.seq, ascending=False)
    if date_from is not None:
        query = query.where(AuditEvent.at >= _day_start(date_from))
    if date_to is not None:
        query = query.where(AuditEvent.at < _day_end(date_to))
    if action:
        query = query.where((AuditEvent.action == action) | AuditEvent.action.like(f"{action}.%"))
    if actor_email:
        actor_uids = await _uids_for_email(actor_email)
        if not actor_uids:
            return empty
        query = query.where(AuditEvent.actor_uid.is_in(actor_uids))
    subjects = await _subject_uids(subject_uid, subject_email)
    if subjects is not None:
        if not subjects:
            return empty
        query = query.where(AuditEvent.subject_uid.is_in(subjects))
    rows = await query.limit(limit + 1).offset(offset)
    entries = await _entries(rows[:limit])
    return SearchPage(entries=entries, has_more=len(rows) > limit, limit=limit, offset=offset)


def _zone() -> ZoneInfo:
    return ZoneInfo(runtime.settings().time_zone)


def _day_start(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.combine(value, time.min, tzinfo=_zone()).astimezone(UTC)


def _day_end(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return _day_start(value + timedelta(days=1))


async def _uids_for_email(email: str) -> list[str]:
    from core.accounts.tables import User

    rows = await User.select(User.uid).where(User.email == email.strip().lower())
    return [str(row["uid"]) for row in rows]


async def _subject_uids(
    subject_uid: str | uuid.UUID | None, subject_email: str | None
) -> list[str] | None:
    """None: no subject filter; a list (maybe empty): the subjects to match."""
    if subject_uid is not None:
        try:
            return [_normalise_uid(subject_uid)]  # type: ignore[list-item]
        except AuditError:
            return []
    if subject_email:
        return await _uids_for_email(subject_email)
    return None


async def _entries(rows: list[dict[str, Any]]) -> list[AuditEntry]:
    emails = await _emails_for(
        uid for row in rows for uid in (row["actor_uid"], row["subject_uid"]) if uid
    )
    return [
        AuditEntry(
            seq=row["seq"],
            at=row["at"],
            actor_uid=row["actor_uid"],
            actor_email=emails.get(row["actor_uid"]),
            actor_role=row["actor_role"],
            action=row["action"],
            object_type=row["object_type"],
            object_id=row["object_id"],
            case_id=row["case_id"],
            subject_uid=row["subject_uid"],
            subject_email=emails.get(row["subject_uid"]),
            outcome=row["outcome"],
            ip=row["ip"],
            details=_parse_details(row["details"]),
        )
        for row in rows
    ]


async def _emails_for(uids: Iterable[str]) -> dict[str, str]:
    """uid → email; a separate query because audit ids are text, account ids are UUIDs."""
    from core.accounts.tables import User

    wanted = set()
    for uid in uids:
        try:
            wanted.add(uuid.UUID(uid))
        except ValueError:
            continue
    if not wanted:
        return {}
    rows = await User.select(User.uid, User.email).where(User.uid.is_in(list(wanted)))
    return {str(row["uid"]): row["email"] for row in rows}


def _parse_details(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

"""Provider upload links: a patient lets their own doctor send records without an account.

A link carries a random token (`secrets.token_urlsafe(32)`); only its SHA-256 is stored. A link
works until it expires, is revoked, has been used `max_uses` times, or the case stops taking
records, and `resolve()` gives the same answer (None) for each of those and for an unknown
token. Each upload request counts one use through a conditional UPDATE, so two uploads racing
for the last use cannot both pass. Tokens never reach the audit log or any other log.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from hashlib import sha256

from core import clock, context, db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import service as cases
from core.cases.service import CaseNotFound
from core.cases.tables import Case
from core.documents.tables import ProviderLink
from core.errors import InvalidInput, NotFound, Refused
from core.ids import parse_uuid
from core.keys import derive_key
from core.tokens import new_token, token_hash

DAYS_DEFAULT, DAYS_MAX = 14, 30
USES_DEFAULT, USES_MAX = 5, 20
NOTE_MAX = 300
MAX_OPEN_LINKS = 20  # links still usable on one case at a time
MAX_TOKEN_CHARS = 100  # token_urlsafe(32) is 43 characters; anything much longer is not ours
PROVIDER = "provider"  # audit role of the person holding a link (no account)


class LinkRefused(Refused):
    """A link cannot be made now; `message` says why, for the patient."""


class LinkNotFound(NotFound):
    """No such link on this case."""


accepts_records = cases.accepts_records


# The patient's side ----------------------------------------------------------------------------


def check_form(data: dict[str, str]) -> tuple[dict[str, object], dict[str, str]]:
    """Read the link form (strings) into note / days_valid / max_uses; missing numbers take their
    defaults. Returns (values, errors keyed by field name)."""
    errors: dict[str, str] = {}
    note = " ".join((data.get("note") or "").split())
    if len(note) > NOTE_MAX:
        errors["note"] = f"Use at most {NOTE_MAX} characters."

    def number(name: str, default: int, high: int, message: str) -> int:
        raw = (data.get(name) or "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= high:
            errors[name] = message
        return value

    days = number("days_valid", DAYS_DEFAULT, DAYS_MAX, f"Choose from 1 to {DAYS_MAX} days.")
    uses = number("max_uses", USES_DEFAULT, USES_MAX, f"Choose from 1 to {USES_MAX} uploads.")
    return {"note": note, "days_valid": days, "max_uses": uses}, errors


def _own(patient: User, case: Case) -> None:
    if case.patient != patient.id:
        raise CaseNotFound


async def create_link(
    patient: User,
    case: Case,
    *,
    note: str = "",
    days_valid: int = DAYS_DEFAULT,
    max_uses: int = USES_DEFAULT,
    ip: str | None,
) -> tuple[ProviderLink, str]:
    """A new link for the owning patient's case: (row, token). The token is returned once and
    never stored; show it to the patient and forget it."""
    _own(patient, case)
    _, errors = check_form({"note": note, "days_valid": str(days_valid), "max_uses": str(max_uses)})
    if errors:
        raise InvalidInput(errors)
    if not accepts_records(case):
        raise LinkRefused("Records can no longer be added to this case, so no new links.")
    return await _new_link(
        case, patient, str(patient.uid), note=note, days_valid=days_valid, max_uses=max_uses, ip=ip
    )


async def create_link_for_request(
    case: Case, staff: User, *, note: str, ip: str | None
) -> tuple[ProviderLink, str]:
    """A link a coordinator sends the patient's doctor with a request for records
    (core/completeness), inside its transaction once the case waits for them. The patient sees
    it in their list of links, with `note`, and may revoke it."""
    patient = await User.select(User.uid).where(User.id == case.patient).first()
    note = " ".join(note.split())[:NOTE_MAX]
    return await _new_link(
        case,
        staff,
        str(patient["uid"]) if patient else None,
        note=note,
        days_valid=DAYS_DEFAULT,
        max_uses=USES_MAX,
        ip=ip,
    )


async def _new_link(
    case: Case,
    creator: User,
    subject_uid: str | None,
    *,
    note: str,
    days_valid: int,
    max_uses: int,
    ip: str | None,
) -> tuple[ProviderLink, str]:
    token, hashed = new_token()
    async with db.transaction():
        open_to_records = cases.accepting_records() & (Case.id == case.id)
        if not await Case.exists().where(open_to_records):
            raise LinkRefused("Records can no longer be added to this case, so no new links.")
        if await ProviderLink.count().where(_usable(case.id)) >= MAX_OPEN_LINKS:
            raise LinkRefused(
                f"This case already has {MAX_OPEN_LINKS} working links. "
                "Revoke one you no longer need, then try again."
            )
        link = ProviderLink(
            uid=uuid.uuid4(),
            case=case.id,
            created_by=creator.id,
            token_hash=hashed,
            note=" ".join(note.split()),
            expires_at=clock.now() + timedelta(days=days_valid),
            max_uses=max_uses,
            uses=0,
        )
        await ProviderLink.insert(link)
        await audit.record_about(
            "provider_link.create",
            link,
            case=case,
            actor=creator,
            subject_uid=subject_uid,
            ip=ip,
            details={"days_valid": days_valid, "max_uses": max_uses},
        )
    return link, token


def _usable(case_id: int | None = None, *, uses_left: bool = True):
    """Where a link can still be used (optionally: on this case). Without `uses_left`, a link
    whose uses are all taken still counts: an upload that took the last use may finish."""
    where = ProviderLink.revoked_at.is_null() & (ProviderLink.expires_at > clock.now())
    if uses_left:
        where &= ProviderLink.uses < ProviderLink.max_uses
    if case_id is not None:
        where &= ProviderLink.case == case_id
    return where


@dataclass(frozen=True)
class LinkLine:
    """One link as the patient's list shows it."""

    link: ProviderLink
    status: str  # active | used_up | expired | revoked | closed
    label: str

    @property
    def active(self) -> bool:
        return self.status == "active"


LABELS = {
    "active": "Active",
    "used_up": "Used up",
    "expired": "Expired",
    "revoked": "Revoked",
    "closed": "Closed",
}


def status_of(link: ProviderLink, case: Case, at: datetime | None = None) -> str:
    at = at or clock.now()
    if link.revoked_at is not None:
        return "revoked"
    if link.expires_at <= at:
        return "expired"
    if link.uses >= link.max_uses:
        return "used_up"
    if not accepts_records(case):
        return "closed"
    return "active"


async def links_of(case: Case) -> list[LinkLine]:
    """The case's links, newest first, each with its status."""
    at = clock.now()
    rows = (
        await ProviderLink.objects()
        .where(ProviderLink.case == case.id)
        .order_by(ProviderLink.created_at, ascending=False)
        .order_by(ProviderLink.id, ascending=False)
    )
    lines = []
    for link in rows:
        status = status_of(link, case, at)
        lines.append(LinkLine(link=link, status=status, label=LABELS[status]))
    return lines


async def revoke(patient: User, case: Case, link_uid: str, *, ip: str | None) -> bool:
    """Stop a link working. True when it was working until now, False when it was revoked
    already; LinkNotFound when the case has no such link."""
    _own(patient, case)
    parsed = parse_uuid(link_uid)
    if parsed is None:
        raise LinkNotFound
    async with db.transaction():
        changed = (
            await ProviderLink.update({ProviderLink.revoked_at: clock.now()})
            .where(
                (ProviderLink.uid == parsed)
                & (ProviderLink.case == case.id)
                & ProviderLink.revoked_at.is_null()
            )
            .returning(ProviderLink.uid)
        )
        if not changed:
            exists = await ProviderLink.exists().where(
                (ProviderLink.uid == parsed) & (ProviderLink.case == case.id)
            )
            if not exists:
                raise LinkNotFound
            return False
        await audit.record_about(
            "provider_link.revoke",
            parsed,
            case=case,
            actor=patient,
            subject_uid=str(patient.uid),
            ip=ip,
        )
    return True


# The provider's side ---------------------------------------------------------------------------


async def resolve(token: str, *, uses_left: bool = True) -> tuple[ProviderLink, Case] | None:
    """The link and its case while the link works; None for an unknown, expired, revoked or
    used-up link, or a case that no longer takes records (one answer for every reason).
    `uses_left=False` is for going on with an upload that already took its use."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    link = (
        await ProviderLink.objects()
        .where((ProviderLink.token_hash == token_hash(token)) & _usable(uses_left=uses_left))
        .first()
    )
    if link is None:
        return None
    case = await Case.objects().where(Case.id == link.case).first()
    if case is None or not accepts_records(case):
        return None
    return link, case


async def _audit_ids(link: ProviderLink) -> tuple[str | None, str | None]:
    row = (
        await Case.select(Case.uid, Case.patient.uid.as_alias("patient_uid"))
        .where(Case.id == link.case)
        .first()
    )
    return (str(row["uid"]), str(row["patient_uid"])) if row else (None, None)


async def use(link: ProviderLink, *, ip: str | None = None) -> bool:
    """Count one upload on the link, atomically: True when a use was left and is now taken.

    One conditional UPDATE (uses < max_uses, not revoked, not expired, case still taking
    records): of two requests racing for the last use, exactly one gets a row back.
    """
    accepting_cases = Case.select(Case.id).where(cases.accepting_records())
    case_uid, patient_uid = await _audit_ids(link)
    async with db.transaction():
        taken = (
            await ProviderLink.update({ProviderLink.uses: ProviderLink.uses + 1})
            .where(
                (ProviderLink.id == link.id) & _usable() & ProviderLink.case.is_in(accepting_cases)
            )
            .returning(ProviderLink.uses, ProviderLink.max_uses)
        )
        if not taken:
            return False
        link.uses = taken[0]["uses"]
        await audit.record_about(
            "provider_link.use",
            link,
            case=case_uid,
            actor_role=PROVIDER,
            subject_uid=patient_uid,
            ip=ip,
            details={"use": link.uses, "max_uses": taken[0]["max_uses"]},
        )
    return True


async def release(link: ProviderLink, *, ip: str | None = None) -> None:
    """Give back the use an upload took when nothing from it was kept (a refused file, a
    broken connection): a provider who sent the wrong kind of file can try again."""
    case_uid, patient_uid = await _audit_ids(link)
    async with db.transaction():
        given = (
            await ProviderLink.update({ProviderLink.uses: ProviderLink.uses - 1})
            .where((ProviderLink.id == link.id) & (ProviderLink.uses > 0))
            .returning(ProviderLink.uses)
        )
        if not given:
            return
        link.uses = given[0]["uses"]
        await audit.record_about(
            "provider_link.release",
            link,
            case=case_uid,
            actor_role=PROVIDER,
            subject_uid=patient_uid,
            ip=ip,
            details={"uses": link.uses},
        )


# A folder arrives in several requests (static/upload.js): the first takes the link's use and
# its answer carries a group token; the later ones name it and take none. The token is an HMAC
# of the link and an end time (no row): it works only for that link, while the link itself
# still works, and for GROUP_HOURS after the last batch that renewed it.
GROUP_HOURS = 2


def _group_mac(link_id: int, until: int) -> str:
    key = derive_key(context.settings(), "provider upload group")
    return hmac.new(key, f"{link_id}.{until}".encode(), sha256).hexdigest()[:32]


def group_token(link: ProviderLink) -> str:
    """For the answer to a batch that took (or went on with) the link's use."""
    until = int((clock.now() + timedelta(hours=GROUP_HOURS)).timestamp())
    return f"{until}.{_group_mac(link.id, until)}"


def continues(link: ProviderLink, token: str) -> bool:
    """Whether a batch names the group of an earlier batch of the same upload on this link."""
    until_text, _, mac = (token or "").partition(".")
    if not until_text.isdigit() or len(until_text) > 12:
        return False
    until = int(until_text)
    if until < clock.now().timestamp():
        return False
    return hmac.compare_digest(mac, _group_mac(link.id, until))


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/upload/{token}"

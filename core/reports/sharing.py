"""Sharing the report with the patient's own doctor: a link that needs no account.

The owning patient makes a link (once they can read a released report): it carries a random
token (`secrets.token_urlsafe(32)`) of which only the SHA-256 is stored, works for 1–90 days,
and may also open the case's records. An optional 6-digit access code is shown to the patient
once, to pass on by phone; it is stored as an HMAC under a key derived from the app secret, so
the database alone does not give it away, and MAX_FAILED_CODES wrong codes lock the link for
good (the patient makes a new one). Every attempt at a code takes one of those tries before it
is compared (a correct code gives it back), so requests sent at once cannot guess more.

`open()` gives the same answer (None) for an unknown, expired, revoked or locked link and for a
case whose report the patient can no longer read. Every opening is written as a ShareOpening
(the patient's read receipts) and to the audit log, with the share's uid and never the token.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any

from core import clock, context, db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases.service import CaseNotFound
from core.cases.tables import Case
from core.errors import InvalidInput, NotFound, Refused
from core.ids import parse_uuid
from core.keys import derive_key
from core.reports import service as reports
from core.reports.tables import Report, ReportShare, ShareOpening
from core.roles import PATIENT
from core.tokens import new_token, token_hash

DAYS_DEFAULT, DAYS_MAX = 14, 90
LABEL_MAX = 120
MAX_FAILED_CODES = 5
MAX_OPEN_SHARES = 20  # links still working on one case at a time
MAX_TOKEN_CHARS = 100  # token_urlsafe(32) is 43 characters
CODE_DIGITS = 6
SHARE_ROLE = "share_link"  # audit role of whoever holds a link (no account)

REPORT, PDF, DOCUMENT = "report", "pdf", "document"  # what an opening opened
WHATS = (REPORT, PDF, DOCUMENT)
WHAT_WORDS = {
    REPORT: "the report",
    PDF: "the report's PDF",
    DOCUMENT: "a record",
}
STATUS_WORDS = {
    "active": "Working",
    "expired": "Expired",
    "revoked": "Revoked",
    "locked": "Locked after wrong codes",
}


class ShareRefused(Refused):
    """No link can be made now; `message` says why, for the patient."""


class ShareNotFound(NotFound):
    """No such share on this case."""


# The patient's side ------------------------------------------------------------------------


def check_form(data: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The share form (strings) read into label / days / include_records / with_code.
    Returns (values, errors keyed by field name)."""
    errors: dict[str, str] = {}
    label = " ".join((data.get("label") or "").split())
    if not label:
        errors["label"] = "Say who the link is for, for example “Dr Aslam, City Hospital”."
    elif len(label) > LABEL_MAX:
        errors["label"] = f"Use at most {LABEL_MAX} characters."
    text = (data.get("days") or "").strip()
    days = DAYS_DEFAULT
    if text:
        try:
            days = int(text)
        except ValueError:
            days = 0
        if not 1 <= days <= DAYS_MAX:
            errors["days"] = f"Choose from 1 to {DAYS_MAX} days."
    values = {
        "label": label,
        "days": days,
        "include_records": bool(data.get("include_records")),
        "with_code": bool(data.get("with_code")),
    }
    return values, errors


def _code_mac(share_uid: uuid.UUID, code: str) -> str:
    key = derive_key(context.settings(), "report share access code")
    return hmac.new(key, f"{share_uid}:{code}".encode(), sha256).hexdigest()


async def _readable_report(case: Case, patient: User) -> Report | None:
    """The case's report while its patient can read a released version of it."""
    state = await reports.state_of(case, patient)
    if state is None or state.current is None:
        return None
    return await Report.objects().where(Report.case == case.id).first()


def _working(case_id: int | None = None):
    where = (
        ReportShare.revoked_at.is_null()
        & (ReportShare.expires_at > clock.now())
        & (ReportShare.failed_codes < MAX_FAILED_CODES)
    )
    if case_id is not None:
        where &= ReportShare.case == case_id
    return where


async def create(
    case: Case, patient: User, form: Mapping[str, str], *, ip: str | None = None
) -> tuple[ReportShare, str, str | None]:
    """A new link for the owning patient's report, from the share form's entries (`check_form`;
    InvalidInput with the field errors): (row, token, code or None). The token and the code are
    returned once and never stored; show them to the patient and forget them."""
    if patient.role != PATIENT or case.patient != patient.id:
        raise CaseNotFound
    values, errors = check_form(form)
    if errors:
        raise InvalidInput(errors)
    report = await _readable_report(case, patient)
    if report is None:
        raise ShareRefused("You can share your report once it is ready.")
    token, hashed = new_token()
    share_uid = uuid.uuid4()
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}" if values["with_code"] else None
    async with db.transaction():
        if await ReportShare.count().where(_working(case.id)) >= MAX_OPEN_SHARES:
            raise ShareRefused(
                f"You already have {MAX_OPEN_SHARES} working links. "
                "Revoke one you no longer need, then try again."
            )
        share = ReportShare(
            uid=share_uid,
            case=case.id,
            report=report.id,
            created_by=patient.id,
            token_hash=hashed,
            label=values["label"],
            include_records=values["include_records"],
            code_hash=_code_mac(share_uid, code) if code else "",
            failed_codes=0,
            expires_at=clock.now() + timedelta(days=values["days"]),
            created_at=clock.now(),
        )
        await ReportShare.insert(share)
        await audit.record_about(
            "report_share.create",
            share,
            case=case,
            actor=patient,
            subject_uid=str(patient.uid),
            ip=ip,
            details={
                "days": values["days"],
                "include_records": values["include_records"],
                "with_code": bool(code),
            },
        )
    return share, token, code


def status_of(share: ReportShare, at: datetime | None = None) -> str:
    at = at or clock.now()
    if share.revoked_at is not None:
        return "revoked"
    if share.failed_codes >= MAX_FAILED_CODES:
        return "locked"
    if share.expires_at <= at:
        return "expired"
    return "active"


@dataclass
class Receipt:
    at: datetime
    what: str  # report | pdf | document

    @property
    def words(self) -> str:
        return WHAT_WORDS.get(self.what, self.what)


@dataclass
class ShareLine:
    """One link as the patient's list shows it, with its read receipts (newest first)."""

    share: ReportShare
    status: str
    openings: list[Receipt] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def locked(self) -> bool:
        return self.status == "locked"

    @property
    def status_words(self) -> str:
        return STATUS_WORDS[self.status]


async def list_for(case: Case) -> list[ShareLine]:
    """The case's links, newest first, each with its status and read receipts."""
    at = clock.now()
    rows = list(
        await ReportShare.objects()
        .where(ReportShare.case == case.id)
        .order_by(ReportShare.created_at, ascending=False)
        .order_by(ReportShare.id, ascending=False)
    )
    openings: dict[int, list[Receipt]] = {}
    if rows:
        for row in (
            await ShareOpening.select(ShareOpening.share, ShareOpening.opened_at, ShareOpening.what)
            .where(ShareOpening.share.is_in([r.id for r in rows]))
            .order_by(ShareOpening.opened_at, ascending=False)
            .order_by(ShareOpening.id, ascending=False)
        ):
            openings.setdefault(row["share"], []).append(Receipt(row["opened_at"], row["what"]))
    return [ShareLine(row, status_of(row, at), openings.get(row.id, [])) for row in rows]


async def share_panel(case: Case, user: User, **form: Any) -> dict[str, Any]:
    """The context of templates/reports/_share.html on the report page. Only the owning patient
    sees the panel (`share_shown`); `form` carries a failed submit's share_values/share_errors."""
    owner = user.role == PATIENT and case.patient == user.id
    if not owner:
        return {"share_shown": False}
    return {
        "share_shown": True,
        "shares": await list_for(case),
        "share_values": form.get("share_values") or {},
        "share_errors": form.get("share_errors") or {},
        "share_days_default": DAYS_DEFAULT,
        "share_days_max": DAYS_MAX,
        "share_label_max": LABEL_MAX,
    }


async def revoke(patient: User, case: Case, share_uid: str, *, ip: str | None = None) -> bool:
    """Stop a link working: True when it worked until now, False when it was revoked already
    (revoking twice is revoking once); ShareNotFound when the case has no such link."""
    if patient.role != PATIENT or case.patient != patient.id:
        raise CaseNotFound
    parsed = parse_uuid(share_uid)
    if parsed is None:
        raise ShareNotFound
    async with db.transaction():
        changed = (
            await ReportShare.update({ReportShare.revoked_at: clock.now()})
            .where(
                (ReportShare.uid == parsed)
                & (ReportShare.case == case.id)
                & ReportShare.revoked_at.is_null()
            )
            .returning(ReportShare.uid)
        )
        if not changed:
            if not await ReportShare.exists().where(
                (ReportShare.uid == parsed) & (ReportShare.case == case.id)
            ):
                raise ShareNotFound
            return False
        await audit.record_about(
            "report_share.revoke",
            parsed,
            case=case,
            actor=patient,
            subject_uid=str(patient.uid),
            ip=ip,
        )
    return True


# The doctor's side (no account, only the link) --------------------------------------------


@dataclass
class Shared:
    """A working link, with what it opens: the case and its current released version."""

    share: ReportShare
    case: Case
    line: reports.VersionLine
    number: str

    @property
    def has_code(self) -> bool:
        return bool(self.share.code_hash)


async def open(token: str) -> Shared | None:
    """The link while it works; None for an unknown, expired, revoked or locked link, and when
    the case's patient can no longer read a released report (one answer for every reason)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    share = (
        await ReportShare.objects()
        .where((ReportShare.token_hash == token_hash(token)) & _working())
        .first()
    )
    if share is None:
        return None
    case = await Case.objects().where(Case.id == share.case).first()
    patient = await User.objects().where(User.id == case.patient).first() if case else None
    if patient is None:
        return None
    state = await reports.state_of(case, patient)
    if state is None or state.current is None:
        return None
    return Shared(share=share, case=case, line=state.current, number=state.number)


async def check_code(share: ReportShare, code: str, *, ip: str | None = None) -> bool:
    """Whether `code` is the link's access code. Each try first takes one of the link's
    MAX_FAILED_CODES tries (a conditional UPDATE); a correct code gives it back. A link whose
    tries are all taken is locked: no code, right or wrong, opens it again."""
    if not share.code_hash:
        return True
    taken = (
        await ReportShare.update({ReportShare.failed_codes: ReportShare.failed_codes + 1})
        .where((ReportShare.id == share.id) & _working())
        .returning(ReportShare.failed_codes)
    )
    if not taken:
        return False
    entered = "".join((code or "").split())
    right = hmac.compare_digest(_code_mac(share.uid, entered), share.code_hash)
    if right:
        await ReportShare.update({ReportShare.failed_codes: ReportShare.failed_codes - 1}).where(
            (ReportShare.id == share.id) & (ReportShare.failed_codes > 0)
        )
        share.failed_codes = taken[0]["failed_codes"] - 1
        return True
    share.failed_codes = taken[0]["failed_codes"]
    locked = share.failed_codes >= MAX_FAILED_CODES
    await audit.record_about(
        "report_share.lock" if locked else "report_share.wrong_code",
        share,
        case=await _case_uid(share),
        actor=None,
        actor_role=SHARE_ROLE,
        outcome="denied",
        ip=ip,
        details={"share": str(share.uid), "failed_codes": share.failed_codes},
    )
    return False


def tries_left(share: ReportShare) -> int:
    return max(MAX_FAILED_CODES - share.failed_codes, 0)


async def _case_uid(share: ReportShare) -> str | None:
    row = await Case.select(Case.uid).where(Case.id == share.case).first()
    return str(row["uid"]) if row else None


async def record_opening(
    share: ReportShare, what: str, ip: str | None, *, document: str | None = None
) -> None:
    """One opening through the link: the patient's read receipt and an audit event (the
    share's uid and what was opened; no token, nothing medical)."""
    if what not in WHATS:
        raise ValueError(f"unknown opening {what!r}")
    row = await Case.select(Case.uid, Case.patient.uid.as_alias("patient_uid")).where(
        Case.id == share.case
    )
    case_uid = str(row[0]["uid"]) if row else None
    patient_uid = str(row[0]["patient_uid"]) if row else None
    details: dict[str, Any] = {"share": str(share.uid), "what": what}
    if document:
        details["document"] = document
    async with db.transaction():
        await ShareOpening.insert(ShareOpening(share=share.id, opened_at=clock.now(), what=what))
        await audit.record_about(
            "report_share.open",
            share,
            case=case_uid,
            actor=None,
            actor_role=SHARE_ROLE,
            subject_uid=patient_uid,
            ip=ip,
            details=details,
        )


def share_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/shared/{token}"

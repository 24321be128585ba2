"""Urgent findings and the communication log (ACR practice parameter on communicating imaging
findings: a critical or unexpected significant finding is told directly and quickly, and who
was told, when and how is documented — not left for the written report).

The reviewing doctor marks the finding: in that transaction every active coordinator is
emailed (at once whatever their digest settings; the email says "call", never what was found)
and the case shows on their "Needs you" list until one of them takes it in hand. The patient's
page asks them to call until a conversation with them is logged. Each conversation — who, when,
how, read back or not — is logged by the doctor or a coordinator. A doctor may also hold the
report until they have spoken with the patient (a new serious diagnosis should not arrive by
email first): the report issue reads `hold_of`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from core import clock, context, db
from core.accounts import service as accounts
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import states
from core.cases.tables import Case
from core.errors import InvalidInput, Refused
from core.facts import ReportHoldChanged
from core.notifications import service as notifications
from core.reviews.tables import Communication, ReportHold, UrgentFinding
from core.roles import ADMIN, COORDINATOR, DOCTOR

CATEGORIES = {
    "critical": "Critical finding: needs action within hours",
    "unexpected": "Unexpected significant finding: needs action soon",
}
AUDIENCES = {
    "patient": "The patient (or their parent or guardian)",
    "treating_doctor": "The patient's treating doctor",
    "other": "Someone else in the patient's care",
}
METHODS = {
    "phone": "Telephone",
    "video": "Video call",
    "in_person": "In person",
    "secure_message": "Secure message",
}
# Conversations that count as "spoken with the patient" for a report held for a call.
SPOKEN = ("phone", "video", "in_person")
# The states in which the reviewing doctor may still mark or log (until the report issue's).
REVIEWING = (states.ASSIGNED, states.IN_REVIEW, states.AWAITING_INFO, states.REPORT_READY)


def _may_log(case: Case, user: User) -> bool:
    if user.role in (COORDINATOR, ADMIN):
        return True
    return user.role == DOCTOR and case.assigned_doctor == user.id and case.status in REVIEWING


def check_finding(values: dict[str, str]) -> dict[str, str]:
    errors = {}
    if values.get("category") not in CATEGORIES:
        errors["category"] = "Choose how urgent the finding is."
    note = (values.get("finding_note") or "").strip()
    if not note:
        errors["finding_note"] = (
            "Say what was found and what needs to happen (the care team reads it)."
        )
    elif len(note) > 2000:
        errors["finding_note"] = "Use at most 2,000 characters."
    return errors


async def mark(case: Case, doctor: User, values: dict[str, str], *, ip: str | None) -> bool:
    """Mark the case's urgent finding and alert the coordinators; False when it was marked
    already (nobody is alerted twice)."""
    if not (doctor.role == DOCTOR and case.assigned_doctor == doctor.id):
        raise Refused("Only the reviewing doctor marks an urgent finding.", status=404)
    if case.status not in REVIEWING:
        raise Refused("This case is not in review.")
    errors = check_finding(values)
    if errors:
        raise InvalidInput(errors)
    async with db.transaction():
        inserted = await UrgentFinding.raw(
            'INSERT INTO review_urgent (uid, "case", raised_by, raised_at, category, note) '
            'VALUES ({}, {}, {}, {}, {}, {}) ON CONFLICT ("case") DO NOTHING RETURNING id',
            uuid.uuid4(),
            case.id,
            doctor.id,
            clock.now(),
            values["category"],
            values["finding_note"].strip(),
        )
        if not inserted:
            return False
        link = f"{context.settings().base_url}/staff/cases/{case.uid}"
        for person in await accounts.active_coordinators():
            await notifications.enqueue(
                to=person.email,
                template="urgent_finding",
                context={"reference": case.reference, "link": link},
            )
        await audit.record_about(
            "review.urgent",
            case,
            case=case,
            actor=doctor,
            ip=ip,
            details={"category": values["category"]},
        )
    return True


async def take_in_hand(case: Case, coordinator: User, *, ip: str | None) -> bool:
    """A coordinator says they are on it: the case leaves the others' "Needs you" list."""
    if coordinator.role not in (COORDINATOR, ADMIN):
        raise Refused("Coordinators take urgent findings in hand.", status=403)
    async with db.transaction():
        updated = (
            await UrgentFinding.update(
                {
                    UrgentFinding.acknowledged_by: coordinator.id,
                    UrgentFinding.acknowledged_at: clock.now(),
                }
            )
            .where((UrgentFinding.case == case.id) & UrgentFinding.acknowledged_at.is_null())
            .returning(UrgentFinding.id)
        )
        if not updated:
            raise Refused("There is no urgent finding waiting to be taken in hand.")
        await audit.record_about("review.urgent_in_hand", case, case=case, actor=coordinator, ip=ip)
    return True


def _parse_local(text: str) -> datetime | None:
    """A `datetime-local` input, in the hospital's time zone."""
    try:
        naive = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if naive.tzinfo is not None:
        return naive
    return naive.replace(tzinfo=ZoneInfo(context.settings().time_zone))


def check_communication(values: dict[str, str]) -> tuple[dict, dict[str, str]]:
    errors: dict[str, str] = {}
    audience = values.get("audience", "")
    if audience not in AUDIENCES:
        errors["audience"] = "Choose who was told."
    told = (values.get("told") or "").strip()
    if not told:
        errors["told"] = "Name the person told, e.g. “Mrs A. Khan, the patient's mother”."
    elif len(told) > 200:
        errors["told"] = "Use at most 200 characters."
    told_at = _parse_local(values.get("told_at", ""))
    if told_at is None:
        errors["told_at"] = "Enter when they were told, e.g. 2026-12-07 14:05."
    elif told_at > clock.now():
        errors["told_at"] = "Enter a time that has passed."
    method = values.get("told_how", "")
    if method not in METHODS:
        errors["told_how"] = "Choose how they were told."
    if values.get("read_back") not in ("yes", "no"):
        errors["read_back"] = "Say whether they repeated the finding back to you."
    note = (values.get("log_note") or "").strip()
    if len(note) > 1000:
        errors["log_note"] = "Use at most 1,000 characters."
    cleaned = {
        "audience": audience,
        "told": told,
        "told_at": told_at,
        "method": method,
        "read_back": values.get("read_back") == "yes",
        "note": note,
    }
    return cleaned, errors


async def log(case: Case, user: User, values: dict[str, str], *, ip: str | None) -> Communication:
    if not _may_log(case, user):
        raise Refused("Only the reviewing doctor and coordinators log a conversation.", status=404)
    cleaned, errors = check_communication(values)
    if errors:
        raise InvalidInput(errors)
    row = Communication(uid=uuid.uuid4(), case=case.id, recorded_by=user.id, **cleaned)
    async with db.transaction():
        await Communication.insert(row)
        await audit.record_about(
            "review.communication",
            row,
            case=case,
            actor=user,
            ip=ip,
            details={"audience": cleaned["audience"], "method": cleaned["method"]},
        )
        if cleaned["audience"] == "patient" and cleaned["method"] in SPOKEN:
            await context.current().events.publish(ReportHoldChanged(case_id=case.id))
    return row


async def set_hold(case: Case, doctor: User, hold: bool, *, ip: str | None) -> None:
    if not (doctor.role == DOCTOR and case.assigned_doctor == doctor.id):
        raise Refused("Only the reviewing doctor holds the report.", status=404)
    async with db.transaction():
        if hold:
            await ReportHold.raw(
                'INSERT INTO review_hold ("case", held_by, held_at) VALUES ({}, {}, {}) '
                'ON CONFLICT ("case") DO NOTHING',
                case.id,
                doctor.id,
                clock.now(),
            )
        else:
            await ReportHold.delete().where(ReportHold.case == case.id)
            await context.current().events.publish(ReportHoldChanged(case_id=case.id))
        await audit.record_about(
            "review.hold", case, case=case, actor=doctor, ip=ip, details={"hold": hold}
        )


@dataclass
class LogLine:
    at: datetime
    told: str
    audience: str
    method: str
    read_back: bool
    note: str
    by: str


@dataclass
class Urgency:
    """What the case pages show of urgent findings and conversations."""

    finding: UrgentFinding | None
    raised_by: str
    log: list[LogLine]
    held: bool
    spoken_with_patient: bool

    @property
    def category(self) -> str:
        return CATEGORIES.get(self.finding.category, "") if self.finding else ""

    @property
    def patient_should_call(self) -> bool:
        """The patient's page asks them to call until a conversation with them is logged."""
        return self.finding is not None and not self.spoken_with_patient

    @property
    def waiting_for_staff(self) -> bool:
        return self.finding is not None and self.finding.acknowledged_at is None

    @property
    def held_for_call(self) -> bool:
        """The report waits: held, and nobody has spoken with the patient yet."""
        return self.held and not self.spoken_with_patient


async def urgency_of(case: Case) -> Urgency:
    finding = await UrgentFinding.objects().where(UrgentFinding.case == case.id).first()
    rows = (
        await Communication.objects()
        .where(Communication.case == case.id)
        .order_by(Communication.told_at)
    )
    ids = {row.recorded_by for row in rows} | ({finding.raised_by} if finding else set())
    names = {
        user["id"]: user["full_name"]
        for user in await User.select(User.id, User.full_name).where(
            User.id.is_in([i for i in ids if i is not None] or [0])
        )
    }
    held = await ReportHold.exists().where(ReportHold.case == case.id)
    spoken = any(r.audience == "patient" and r.method in SPOKEN for r in rows)
    return Urgency(
        finding=finding,
        raised_by=names.get(finding.raised_by, "") if finding else "",
        log=[
            LogLine(
                at=row.told_at,
                told=row.told,
                audience=AUDIENCES.get(row.audience, row.audience),
                method=METHODS.get(row.method, row.method),
                read_back=row.read_back,
                note=row.note,
                by=names.get(row.recorded_by, ""),
            )
            for row in rows
        ],
        held=held,
        spoken_with_patient=spoken,
    )


async def cases_waiting_for_staff(limit: int) -> list[Case]:
    """Cases with an urgent finding nobody has taken in hand yet, oldest first."""
    return list(
        await Case.objects()
        .where(
            Case.id.is_in(
                UrgentFinding.select(UrgentFinding.case).where(
                    UrgentFinding.acknowledged_at.is_null()
                )
            )
        )
        .limit(limit)
    )

"""The turnaround clock stands still while a case waits for the patient, their doctor or
physical materials (core/completeness says when a case starts and stops waiting).

The rule for part days, the same as for receipt (docs/architecture.md, "The turnaround
clock"): a pause moves the due date by the working days after the day it began, up to and
including the day it ended. A pause begun and ended on the same day moves nothing; one from
Friday to Monday moves one day (Monday), whatever the hours; weekends and holidays inside it
move nothing, because the due date never counted them. Only time on the clock counts: a case
that waited before it was received starts its clock at receipt, as it would have anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from core import clock, context
from core.accounts.tables import User
from core.cases import states, turnaround
from core.cases.reception import case_url, locked_case
from core.cases.service import note_event
from core.cases.tables import Case, CasePause
from core.notifications import service as notifications

PATIENT, PROVIDER, MATERIALS = "patient", "provider", "materials"
# Why the clock stood still, in the patient's words.
REASON_WORDS = {
    PATIENT: "waiting for your reply",
    PROVIDER: "waiting for records from your doctor",
    MATERIALS: "waiting for the materials sent by post",
}


def days_paused(started: datetime, ended: datetime, received: datetime | None) -> int:
    """Working days a pause from `started` to `ended` moves the due date by (module rule)."""
    if received is None:
        return 0  # the clock had not started, and starts at receipt as it would have anyway
    settings = context.settings()
    first = clock.local_date(max(started, received), settings.time_zone)
    last = clock.local_date(ended, settings.time_zone)
    return turnaround.working_days_left(
        first, last, country=settings.holiday_country, weekend=settings.weekend_days
    )


async def start_waiting(case_id: int, reason: str) -> bool:
    """The case waits from now (inside the caller's transaction): False when it already did."""
    case = await locked_case(case_id)
    if case is None or case.waiting_since is not None:
        return False
    now = clock.now()
    await Case.update({Case.waiting_since: now}).where(Case.id == case_id)
    await CasePause.insert(CasePause(case=case_id, reason=reason, started_at=now))
    return True


async def stop_waiting(case_id: int) -> int:
    """The case stops waiting now (inside the caller's transaction): its due date moves by the
    working days paused, said on the timeline. Returns the days moved."""
    case = await locked_case(case_id)
    if case is None or case.waiting_since is None:
        return 0
    now = clock.now()
    pause = (
        await CasePause.objects()
        .where((CasePause.case == case_id) & CasePause.ended_at.is_null())
        .first()
    )
    days = days_paused(pause.started_at if pause else case.waiting_since, now, case.received_at)
    changes: dict = {Case.waiting_since: None}
    due = case.due_on
    if days and due is not None:
        settings = context.settings()
        due = turnaround.add_working_days(
            due, days, country=settings.holiday_country, weekend=settings.weekend_days
        )
        changes[Case.due_on] = due
    await Case.update(changes).where(Case.id == case_id)
    if pause is not None:
        await CasePause.update({CasePause.ended_at: now, CasePause.days_moved: days}).where(
            CasePause.id == pause.id
        )
    if days and due is not None:
        word = "day" if days == 1 else "days"
        patient = await User.select(User.email).where(User.id == case.patient).first()
        await notifications.enqueue(
            to=patient["email"],
            template="due_moved",
            context={
                "reference": case.reference,
                "due": due.strftime("%A %-d %B %Y"),
                "why": REASON_WORDS.get(pause.reason if pause else "", "waiting"),
                "case_url": case_url(case),
            },
        )
        await note_event(
            case_id,
            "clock_moved",
            f"Expected date moved by {days} working {word} to {due:%-d %B %Y} (paused while we "
            "waited)",
        )
    return days


@dataclass(frozen=True)
class PauseLine:
    """One pause as the case pages say it: "Paused from 3 Dec to 7 Dec, waiting for your
    reply: the expected date moved by 2 working days"."""

    started: date
    ended: date | None  # None: still paused
    why: str
    days_moved: int


@dataclass(frozen=True)
class ClockView:
    """The turnaround as case pages tell it: the due date, and why it moved or stands still."""

    due: date | None
    first_due: date | None  # as set on receipt
    paused: PauseLine | None  # the pause going on now
    moves: list[PauseLine]  # ended pauses that moved the due date
    late: date | None = None  # overdue: the later date the patient was told to expect

    @property
    def moved(self) -> bool:
        return bool(self.moves)


async def clock_of(case: Case) -> ClockView:
    lines = await pauses_of(case)
    return ClockView(
        due=case.due_on,
        first_due=case.due_first,
        paused=next((line for line in lines if line.ended is None), None)
        if case.waiting_since is not None
        else None,
        moves=[line for line in lines if line.ended is not None and line.days_moved],
        late=case.late_expected_on
        if case.late_expected_on
        and case.due_on
        and case.late_expected_on > case.due_on
        and case.status in states.ON_THE_CLOCK
        else None,
    )


async def pauses_of(case: Case) -> list[PauseLine]:
    """The case's pauses, oldest first, in the hospital's days."""
    zone = context.settings().time_zone
    rows = await CasePause.objects().where(CasePause.case == case.id).order_by(CasePause.id)
    return [
        PauseLine(
            started=clock.local_date(row.started_at, zone),
            ended=clock.local_date(row.ended_at, zone) if row.ended_at else None,
            why=REASON_WORDS.get(row.reason, "waiting"),
            days_moved=row.days_moved,
        )
        for row in rows
    ]

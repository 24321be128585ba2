"""The turnaround's escalation ladder, run as a periodic job (core/schedule):

- **At risk** (one working day or less left, core/cases/turnaround.py): the coordinators are
  emailed, once for that due date.
- **Overdue** (the day after the due day): the coordinators and the specialty's department
  lead(s) are emailed, and the patient is told, with an apology, the later date to expect the
  report by (`CONSILIUM_OVERDUE_EXTENSION_WORKING_DAYS` working days on), once for that due
  date.

"Once" is a conditional UPDATE on the case (the due date the alert was sent for), in the same
transaction as the emails it queues: two runs, or two processes, cannot both send it. A pause
that moves the due date lets the ladder start again for the new date. A case that waits (its
clock paused) is never at risk or overdue.
"""

from __future__ import annotations

from core import context, db
from core.accounts import preferences
from core.accounts import service as accounts
from core.accounts.doctors import leads_of
from core.accounts.tables import User
from core.cases import service as cases
from core.cases import turnaround
from core.cases.reception import case_url
from core.cases.tables import Case
from core.notifications import service as notifications

BATCH = 100


def _staff_link(case: Case) -> str:
    return f"{context.settings().base_url}/staff/cases/{case.uid}"


async def alert_at_risk() -> int:
    """Email the coordinators about each case newly at risk; how many cases."""
    # At risk as the queues say it (cases.QueueFilter owns the rule: on the clock, not waiting).
    at_risk = cases.QueueFilter(due=turnaround.AT_RISK).where(cases.today())
    not_yet = Case.at_risk_alerted_for.is_null() | (Case.at_risk_alerted_for != Case.due_on)
    due = await Case.objects().where(at_risk & not_yet).order_by(Case.due_on).limit(BATCH)
    sent = 0
    for case in due:
        async with db.transaction():
            claimed = (
                await Case.update({Case.at_risk_alerted_for: Case.due_on})
                .where((Case.id == case.id) & at_risk & not_yet)
                .returning(Case.id)
            )
            if not claimed:
                continue
            for person in await preferences.at_once(
                await accounts.active_coordinators(), preferences.AT_RISK
            ):
                await notifications.enqueue(
                    to=person.email,
                    template="case_at_risk",
                    context={
                        "reference": case.reference,
                        "due": case.due_on.strftime("%A %-d %B %Y"),
                        "link": _staff_link(case),
                    },
                )
            sent += 1
    return sent


async def alert_overdue() -> int:
    """Email the coordinators and the department leads about each case newly overdue, and tell
    its patient the later date to expect the report by; how many cases."""
    settings = context.settings()
    today = cases.today()
    overdue = cases.QueueFilter(due=turnaround.OVERDUE).where(today)
    not_yet = Case.overdue_alerted_for.is_null() | (Case.overdue_alerted_for != Case.due_on)
    due = await Case.objects().where(overdue & not_yet).order_by(Case.due_on).limit(BATCH)
    sent = 0
    for case in due:
        expected = turnaround.add_working_days(
            today,
            settings.overdue_extension_working_days,
            country=settings.holiday_country,
            weekend=settings.weekend_days,
        )
        async with db.transaction():
            claimed = (
                await Case.update(
                    {Case.overdue_alerted_for: Case.due_on, Case.late_expected_on: expected}
                )
                .where((Case.id == case.id) & overdue & not_yet)
                .returning(Case.id)
            )
            if not claimed:
                continue
            staff = await accounts.active_coordinators() + await leads_of(case.specialty)
            told = await preferences.at_once(staff, preferences.OVERDUE)
            for email in dict.fromkeys(p.email for p in told):  # once each, a lead coordinating
                await notifications.enqueue(
                    to=email,
                    template="case_overdue",
                    context={
                        "reference": case.reference,
                        "due": case.due_on.strftime("%A %-d %B %Y"),
                        "link": _staff_link(case),
                    },
                )
            patient = await User.select(User.email).where(User.id == case.patient).first()
            await notifications.enqueue(
                to=patient["email"],
                template="report_late",
                context={
                    "reference": case.reference,
                    "due": expected.strftime("%A %-d %B %Y"),
                    "case_url": case_url(case),
                    "contact_email": settings.contact_email,
                },
            )
            sent += 1
    return sent


async def run() -> int:
    """The periodic job: overdue first (the more urgent), then at risk."""
    return await alert_overdue() + await alert_at_risk()

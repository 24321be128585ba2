"""Who hears of a case's way to a doctor, by email through the outbox (written in the
transaction of the change, sent after it commits). Emails carry the reference, a link and
status words, never anything medical (docs/security.md 24).

- The doctor a case is offered to: to answer by the offer's deadline.
- The coordinators: a case needs a doctor (nobody could take it, or coordinators choose), and
  each time a doctor declines, hands back or lets an offer lapse (whether it moved on or not).
- The patient: a specialist accepted their case.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from core import context
from core.accounts import preferences
from core.accounts import service as accounts
from core.accounts.tables import User
from core.cases.reception import case_url
from core.cases.tables import Case
from core.notifications import service as notifications

# Why coordinators are told, in words.
NEEDS_A_DOCTOR = "It is received and no doctor can take it now."
COORDINATORS_CHOOSE = "It is received; coordinators choose its doctor."
DECLINED = "The doctor offered it declined."
LAPSED = "The doctor offered it did not answer in time."
HANDED_BACK = "The doctor who accepted it handed it back."


def _when(at: datetime) -> str:
    zone = ZoneInfo(context.settings().time_zone)
    return at.astimezone(zone).strftime("%A %-d %B %Y, %H:%M")


async def offered(case: Case, doctor: User, respond_by: datetime) -> None:
    if not await preferences.at_once([doctor], preferences.OFFERS):
        return  # in their digest
    await notifications.enqueue(
        to=doctor.email,
        template="case_offered",
        context={
            "reference": case.reference,
            "due": _when(respond_by),
            "link": f"{context.settings().base_url}/doctor/cases/{case.uid}",
        },
    )


async def to_coordinators(case: Case, why: str, *, moved_on: bool) -> None:
    """`why` is one of this module's sentences; `moved_on`: offered to another doctor since."""
    coordinators = await accounts.active_coordinators()
    for person in await preferences.at_once(coordinators, preferences.NEEDS_A_DOCTOR):
        await notifications.enqueue(
            to=person.email,
            template="case_needs_attention",
            context={
                "reference": case.reference,
                "why": why,
                "moved_on": moved_on,
                "link": f"{context.settings().base_url}/staff/cases/{case.uid}",
            },
        )


async def accepted(case: Case) -> None:
    patient = await User.select(User.email).where(User.id == case.patient).first()
    if patient is None:
        return
    await notifications.enqueue(
        to=patient["email"],
        template="case_accepted",
        context={
            "reference": case.reference,
            "due": case.due_on.strftime("%A %-d %B %Y") if case.due_on else "",
            "case_url": case_url(case),
        },
    )

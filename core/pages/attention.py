"""What needs a staff member now, and their daily digest of it.

One list, three readers: the "Needs you" page (and its count in the header, loaded by htmx so
other pages cost nothing), and the digest emailed once a day at the person's hour in their own
time zone (core/accounts/preferences.py), which a periodic job sends (core/schedule).

- A doctor: the offers waiting for their answer, and their cases at risk or overdue.
- A coordinator or an admin: urgent findings nobody has taken in hand, cases to assign,
  offers not answered yet, cases at risk, overdue,
  and submitted cases waiting for physical materials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import available_timezones

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from core import clock, context, db
from core.accounts import preferences
from core.accounts.tables import MessageSettings, User
from core.assignment.tables import Offer
from core.cases import reception, states, turnaround
from core.cases import service as cases
from core.cases.tables import Case
from core.errors import InvalidInput
from core.notifications import service as notifications
from core.pages.common import form_lists
from core.reviews import urgent
from core.roles import ADMIN, COORDINATOR, DOCTOR
from core.security import role_guard
from core.web import page, redirect

LIMIT = 50  # lines shown per heading; the count says how many there are


@dataclass
class Heading:
    title: str
    cases: list[Case] = field(default_factory=list)
    link: str = ""  # where the whole list is (staff queues)

    @property
    def count(self) -> int:
        return len(self.cases)


async def _at_risk_and_overdue(doctor_id: int | None) -> tuple[list[Case], list[Case]]:
    """As the queues' turnaround filters say (cases.QueueFilter owns the rule), soonest first."""
    today = cases.today()
    found = []
    for due in (turnaround.AT_RISK, turnaround.OVERDUE):
        where = cases.QueueFilter(doctor_id=doctor_id, due=due).where(today)
        found.append(await Case.objects().where(where).order_by(Case.due_on).limit(LIMIT))
    return found[0], found[1]


async def needs_of(user: User) -> list[Heading]:
    """The headings with something in them, most urgent first."""
    if user.role == DOCTOR:
        offered = await (
            Case.objects()
            .where(
                Case.id.is_in(
                    Offer.select(Offer.case).where(
                        (Offer.doctor == user.id) & (Offer.status == "offered")
                    )
                )
                & (Case.assigned_doctor == user.id)
            )
            .order_by(Case.due_on)
        )
        risky, late = await _at_risk_and_overdue(user.id)
        headings = [
            Heading("Overdue", late),
            Heading("Offered to you, waiting for your answer", offered),
            Heading("At risk: due within a working day", risky),
        ]
    elif user.role in (COORDINATOR, ADMIN):
        risky, late = await _at_risk_and_overdue(None)
        to_assign = await (
            Case.objects()
            .where(Case.status == states.RECEIVED)
            .order_by(Case.received_at)
            .limit(LIMIT)
        )
        offered = await (
            Case.objects()
            .where(Case.status == states.OFFERED)
            .order_by(Case.received_at)
            .limit(LIMIT)
        )
        plugins = context.plugins()
        with_materials = [s.slug for s in plugins.specialties() if s.physical_materials]
        submitted = (
            await Case.objects()
            .where((Case.status == states.SUBMITTED) & Case.specialty.is_in(with_materials))
            .order_by(Case.submitted_at)
            if with_materials
            else []
        )
        awaited = [
            case
            for case in submitted
            if reception.missing_materials(case, plugins.specialty(case.specialty))
        ][:LIMIT]
        headings = [
            Heading("Urgent finding: call now", await urgent.cases_waiting_for_staff(LIMIT)),
            Heading("Overdue", late, "/staff/cases?queue=open&due=overdue"),
            Heading("To assign", to_assign, "/staff/cases?queue=received"),
            Heading(
                "At risk: due within a working day", risky, "/staff/cases?queue=open&due=at_risk"
            ),
            Heading("Offered, not accepted yet", offered, "/staff/cases?queue=offered"),
            Heading("Waiting for slides or other materials by post", awaited),
        ]
    else:
        headings = []
    return [heading for heading in headings if heading.cases]


def case_link(user: User, case: Case) -> str:
    base = context.settings().base_url
    where = "doctor" if user.role == DOCTOR else "staff"
    return f"{base}/{where}/cases/{case.uid}"


STAFF = (DOCTOR, COORDINATOR, ADMIN)


@get("/attention", guards=[role_guard(*STAFF)])
async def attention_page(request: Request) -> Template:
    """The "Needs you" page; an htmx request gets the header's count only."""
    headings = await needs_of(request.user)
    total = sum(heading.count for heading in headings)
    if request.headers.get("hx-request"):
        return HTMXBlockTemplate(
            template_name="pages/attention.html", block_name="count", context={"total": total}
        )
    where = "doctor" if request.user.role == DOCTOR else "staff"
    return page(request, "pages/attention.html", headings=headings, total=total, where=where)


class MessageSettingsController(Controller):
    """A staff member's digest hour and time zone, and the messages they take in it only."""

    path = "/account/messages"
    guards = [role_guard(*STAFF)]

    async def _page(self, request: Request, status: int = 200, **extra: Any) -> Template:
        chosen = await preferences.settings_of(request.user)
        values = extra.pop("values", None) or {
            "digest_hour": str(chosen.digest_hour),
            "time_zone": chosen.time_zone,
        }
        kept = extra.pop("kept", None)
        return page(
            request,
            "accounts/messages.html",
            status,
            values=values,
            kept=chosen.digest_only if kept is None else kept,
            kinds=preferences.KINDS,
            zones=sorted(available_timezones()),
            errors=extra.pop("errors", {}),
        )

    @get("/")
    async def show(self, request: Request) -> Template:
        return await self._page(request)

    @post("/")
    async def save(self, request: Request) -> Template | Redirect:
        values = await form_lists(request)
        try:
            await preferences.save(request.user, values)
        except InvalidInput as invalid:
            flat = {name: items[0] if items else "" for name, items in values.items()}
            kept = set(values.get("digest_only", []))
            return await self._page(request, 400, values=flat, kept=kept, errors=invalid.errors)
        return redirect("/account/messages", "messages-saved")


# The daily digest --------------------------------------------------------------------------


async def send_digests() -> int:
    """Email each staff member whose digest hour has come today (in their time zone) and who
    has not had today's: what needs them, if anything. Once a day each: a conditional update of
    the day it went, in the transaction that queues it. Returns how many were sent."""
    staff = await User.objects().where(User.role.is_in(list(STAFF)) & User.is_active.eq(True))
    sent = 0
    now = clock.now()
    for person in staff:
        chosen = await preferences.settings_of(person)
        zone = preferences.zone_of(chosen)
        local = now.astimezone(zone)
        due_at = datetime.combine(local.date(), time(chosen.digest_hour), tzinfo=zone)
        if local < due_at:
            continue
        today = local.date()
        async with db.transaction():
            if not await MessageSettings.exists().where(MessageSettings.user == person.id):
                await MessageSettings.insert(MessageSettings(user=person.id))
            claimed = (
                await MessageSettings.update({MessageSettings.last_digest_on: today})
                .where(
                    (MessageSettings.user == person.id)
                    & (
                        MessageSettings.last_digest_on.is_null()
                        | (MessageSettings.last_digest_on < today)
                    )
                )
                .returning(MessageSettings.id)
            )
            if not claimed:
                continue
            headings = await needs_of(person)
            if not headings:
                continue  # nothing needs them today: no email
            await notifications.enqueue(
                to=person.email,
                template="digest",
                context={
                    "day": today.strftime("%A %-d %B %Y"),
                    "headings": [
                        {
                            "title": heading.title,
                            "count": heading.count,
                            "lines": [
                                {"reference": case.reference, "link": case_link(person, case)}
                                for case in heading.cases
                            ],
                        }
                        for heading in headings
                    ],
                    "link": f"{context.settings().base_url}/attention",
                },
            )
            sent += 1
    return sent


ROUTES = [attention_page, MessageSettingsController]

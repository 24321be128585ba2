"""Coordinators' and admins' pages: the queues, a case with its payments and records, and the
actions on it (record an offline payment, decline, retry or record refunds).

Each action is one service call; its problems re-render the case page with what was typed.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.accounts import service as accounts
from core.assignment import service as assignment
from core.cases import pauses, reception, states
from core.cases import service as cases
from core.cases.tables import Case
from core.completeness import service as completeness
from core.errors import InvalidInput, Refused
from core.pages.common import records_page, urgent_panel
from core.payments import service as payments
from core.reports import service as reports
from core.reviews import urgent
from core.roles import ADMIN, COORDINATOR
from core.security import role_guard
from core.web import Page, client_ip, form_data, page, page_request, paginate, redirect

STAFF = (COORDINATOR, ADMIN)
# name: (title, the state of its cases, the order they are listed in: core.cases.service).
QUEUES = {
    "received": ("To assign", states.RECEIVED, "Received longest ago first."),
    "offered": ("Offered, not accepted yet", states.OFFERED, "Received longest ago first."),
    # Every case on the clock, whatever its state: the board.
    "open": ("All open, by due date", states.ON_THE_CLOCK, "Due soonest first."),
    "waiting": ("Waiting for payment or records", states.SUBMITTED, "Submitted longest ago first."),
    "declined": ("Declined", states.DECLINED, "Declined most recently first."),
    # Any state: a payment's refund is due.
    "refunds": ("Refunds to pay back", None, "Submitted longest ago first."),
}
# A queue's cursor: the case's time (or due day) in the queue's order and its id.
CASE_CURSOR = (datetime, int)
BOARD_CURSOR = (date, int)


async def queue_page(
    name: str, params: Any, filters: cases.QueueFilter | None = None
) -> Page[cases.CaseLine]:
    """One page of the queue `name` (a key of QUEUES), as the query string `params` asks,
    narrowed by `filters` (state queues only)."""
    status = QUEUES[name][1]
    kinds = CASE_CURSOR
    if status is None:
        fetch, order = payments.cases_with_refunds_due, cases.REFUND_QUEUE
    else:
        fetch = functools.partial(cases.cases_in, status, filters=filters)
        if isinstance(status, tuple):
            order, kinds = cases.BOARD_ORDER, BOARD_CURSOR
        else:
            order = cases.QUEUE_ORDERS[status]
    return await paginate(fetch, page_request(params, kinds), order.key)


DUE_FILTERS = {"at_risk": "At risk", "overdue": "Overdue"}


async def _filters(request: Request) -> tuple[cases.QueueFilter, dict[str, str], list[Any]]:
    """The queue filters the query string asks for, what to keep in links, and the doctors to
    choose from. Anything unknown is no filter."""
    params = request.query_params
    doctors = await accounts.doctors()
    specialty = params.get("specialty", "")
    if request.app.state.plugins.specialty(specialty) is None:
        specialty = ""
    doctor = next((d for d in doctors if str(d["uid"]) == params.get("doctor", "")), None)
    due = params.get("due", "")
    if due not in DUE_FILTERS:
        due = ""
    kept = {"specialty": specialty, "doctor": str(doctor["uid"]) if doctor else "", "due": due}
    filters = cases.QueueFilter(specialty, doctor["id"] if doctor else None, due)
    return filters, kept, doctors


async def _staff_case(uid: str) -> Case:
    try:
        return await cases.get_case(uid)
    except cases.CaseNotFound:
        raise NotFoundException() from None


class StaffCaseController(Controller):
    path = "/staff/cases"
    guards = [role_guard(*STAFF)]

    @get("/")
    async def queue(self, request: Request) -> Template:
        name = request.query_params.get("queue", "received")
        if name not in QUEUES:
            name = "received"
        filters, kept, doctors = await _filters(request)
        found = await queue_page(name, request.query_params, filters)
        # Open states only: a count of declined cases grows with the history (bench/queue.py:
        # 6.8 ms at 100k cases on PostgreSQL, the one part of the page that did).
        counts = await cases.counts_in([*states.ON_THE_CLOCK, states.SUBMITTED], filters)
        return page(
            request,
            "staff/queue.html",
            cases=found.rows,
            **found.links("/staff/cases", {"queue": name, **kept}),
            counts=counts,
            tab_counts={
                key: sum(counts[s] for s in status) if isinstance(status, tuple) else counts[status]
                for key, (_, status, _) in QUEUES.items()
                if status is not None and (isinstance(status, tuple) or status in counts)
            },
            board=states.ON_THE_CLOCK,
            status_labels=states.STAFF_STATUS,
            filters=kept,
            filtered=any(kept.values()),
            doctors=doctors,
            specialties=request.app.state.plugins.specialties(),
            due_filters=DUE_FILTERS,
            queue=name,
            title=QUEUES[name][0],
            order=QUEUES[name][2],
            queues=QUEUES,
        )

    async def _page(self, request: Request, case: Case, status: int = 200, **extra: Any):
        specialty = request.app.state.plugins.specialty(case.specialty)
        return page(
            request,
            "staff/case.html",
            status,
            case=case,
            specialty=specialty,
            status_label=states.STAFF_STATUS[case.status],
            payment=await payments.summary(case, specialty),
            **await records_page(request, case, f"/staff/cases/{case.uid}"),
            events=await cases.timeline(case, for_staff=True),
            doctors=await assignment.staff_view(case),
            subject=await cases.subject_of(case),
            age=assignment.subject_age(case, assignment.today()),
            answers=cases.answers_of(case),
            questions=cases.questions_of(case),
            can_decline=case.status in states.TRANSITIONS["decline"].sources,
            requests=await completeness.requests_of(case, specialty),
            materials=await completeness.materials_of(case, specialty),
            can_ask=completeness.may_ask(case),
            clock=await pauses.clock_of(case),
            report_state=await reports.state_of(case, request.user),
            **await urgent_panel(case, f"/staff/cases/{case.uid}", can_take=True),
            values=extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    @get("/{uid:str}")
    async def show(self, request: Request, uid: FromPath[str]) -> Template:
        return await self._page(request, await _staff_case(uid))

    async def _act(
        self, request: Request, uid: str, done: str | None, action: Callable[..., Awaitable]
    ) -> Template | Redirect:
        """Run `action(case, values)`; its problems re-render the case page with the entries."""
        case = await _staff_case(uid)
        values = await form_data(request)
        try:
            await action(case, values)
        except InvalidInput as invalid:
            return await self._page(request, case, 400, values=values, errors=invalid.errors)
        except Refused as refused:
            return await self._page(
                request, case, refused.status, values=values, problem=refused.message
            )
        return redirect(f"/staff/cases/{case.uid}", done)

    @post("/{uid:str}/payments")
    async def record_payment(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "payment-recorded",
            lambda case, values: payments.record_offline(case, request.user, values, ip=ip),
        )

    @post("/{uid:str}/decline")
    async def decline(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "case-declined",
            lambda case, values: reception.decline(
                case, request.user, values.get("reason", ""), ip=ip
            ),
        )

    @post("/{uid:str}/offer")
    async def offer(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "case-offered",
            lambda case, values: assignment.offer_to(
                case, values.get("doctor", ""), request.user, ip=ip
            ),
        )

    @post("/{uid:str}/move")
    async def move(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "case-moved",
            lambda case, values: assignment.move(
                case, values.get("doctor", ""), request.user, values.get("reason", ""), ip=ip
            ),
        )

    @post("/{uid:str}/refunds")
    async def retry_refunds(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request, uid, None, lambda case, _: payments.refund_all(case, request.user, ip=ip)
        )

    @post("/{uid:str}/payments/{payment:str}/refunded")
    async def refunded_by_hand(
        self, request: Request, uid: FromPath[str], payment: FromPath[str]
    ) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "refund-recorded",
            lambda case, values: payments.mark_refunded_by_hand(
                case, payment, request.user, values.get("refund_reference", ""), ip=ip
            ),
        )

    @post("/{uid:str}/requests")
    async def ask(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        plugins = request.app.state.plugins
        return await self._act(
            request,
            uid,
            "records-requested",
            lambda case, values: completeness.ask(
                case, request.user, values, plugins.specialty(case.specialty), ip=ip
            ),
        )

    @post("/{uid:str}/requests/{ask:str}/close")
    async def close_request(
        self, request: Request, uid: FromPath[str], ask: FromPath[str]
    ) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "request-closed",
            lambda case, values: completeness.close(
                case, request.user, ask, values.get("outcome", ""), ip=ip
            ),
        )

    @post("/{uid:str}/urgent/in-hand")
    async def take_urgent(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "urgent-in-hand",
            lambda case, values: urgent.take_in_hand(case, request.user, ip=ip),
        )

    @post("/{uid:str}/communications")
    async def log_conversation(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "communication-logged",
            lambda case, values: urgent.log(case, request.user, values, ip=ip),
        )

    @post("/{uid:str}/materials")
    async def material_arrived(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        plugins = request.app.state.plugins
        return await self._act(
            request,
            uid,
            "material-recorded",
            lambda case, values: completeness.record_arrival(
                case, request.user, values, plugins.specialty(case.specialty), ip=ip
            ),
        )

    @post("/{uid:str}/materials/{arrival:str}/returned")
    async def material_returned(
        self, request: Request, uid: FromPath[str], arrival: FromPath[str]
    ) -> Template | Redirect:
        ip = client_ip(request)
        return await self._act(
            request,
            uid,
            "material-returned",
            lambda case, values: completeness.record_return(
                case, request.user, arrival, values, ip=ip
            ),
        )


ROUTES = [StaffCaseController]

"""Coordinators' and admins' pages: the queues, a case with its payments and records, and the
actions on it (record an offline payment, decline, retry or record refunds).

Each action is one service call; its problems re-render the case page with what was typed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.cases import reception, states
from core.cases import service as cases
from core.cases.tables import Case
from core.documents import service as documents
from core.errors import InvalidInput, Refused
from core.payments import service as payments
from core.roles import ADMIN, COORDINATOR
from core.security import role_guard
from core.web import client_ip, form_data, page, redirect

STAFF = (COORDINATOR, ADMIN)
QUEUES = {
    "received": ("Received for review", (states.RECEIVED,)),
    "waiting": ("Waiting for payment or records", (states.SUBMITTED,)),
    "declined": ("Declined", (states.DECLINED,)),
    "refunds": ("Refunds to pay back", ()),  # any state: a payment's refund is due
}


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
        title, statuses = QUEUES.get(name, QUEUES["received"])
        if name == "refunds":
            rows = await payments.cases_with_refunds_due()
        else:
            rows = await cases.cases_in(statuses)
        return page(request, "staff/queue.html", cases=rows, queue=name, title=title, queues=QUEUES)

    async def _page(self, request: Request, case: Case, status: int = 200, **extra: Any):
        specialty = request.app.state.plugins.specialty(case.specialty)
        return page(
            request,
            "staff/case.html",
            status,
            case=case,
            specialty=specialty,
            status_label=states.PATIENT_STATUS[case.status][0],
            payment=await payments.summary(case, specialty),
            documents=documents.record_lines(await documents.documents_of(case)),
            events=await cases.timeline(case),
            can_decline=case.status in states.TRANSITIONS["decline"].sources,
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
            return await self._page(request, case, 409, values=values, problem=refused.message)
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


ROUTES = [StaffCaseController]

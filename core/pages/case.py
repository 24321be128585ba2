"""The patient's case page: where the case stands, its records, payment, links and timeline.

It shows several domains at once, so it lives above them; the forms on it that are answered by
this same page (choosing how to pay) live here too. Uploads, downloads and links are answered
by core/documents/routes.py.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.assignment import service as assignment
from core.cases import pauses, reception
from core.cases import service as cases
from core.cases.reception import records_in
from core.cases.tables import Case
from core.completeness import service as completeness
from core.documents import links as provider_links
from core.documents import resumable
from core.documents import service as documents
from core.errors import InvalidInput, NotFound, Refused
from core.pages.common import own_case, records_page
from core.payments import service as payments
from core.reports import service as reports
from core.reviews import urgent
from core.roles import PATIENT
from core.security import role_guard
from core.web import client_ip, form_data, page, redirect


class CaseController(Controller):
    path = "/cases/{uid:str}"
    guards = [role_guard(PATIENT)]

    @get("/")
    async def show(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        return await case_page(request, await own_case(request, uid))

    @post("/payments")
    async def pay(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        """Start paying with the chosen provider: to its checkout, or back here (offline)."""
        case = await own_case(request, uid)
        choice = (await form_data(request)).get("provider", "")
        try:
            payment = await payments.start_payment(
                case, request.user, choice, ip=client_ip(request)
            )
        except payments.PaymentRefused as refused:
            return await case_page(request, case, 409, payment_error=refused.message)
        if payment.checkout_url:
            return Redirect(path=payment.checkout_url, status_code=303)
        return redirect(f"/cases/{case.uid}#payment", "payment-offline")

    @post("/requests/{ask:str}/answer")
    async def answer(self, request: Request, uid: FromPath[str], ask: FromPath[str]) -> Any:
        """The patient says they sent what a coordinator asked for."""
        case = await own_case(request, uid)
        values = await form_data(request)
        try:
            await completeness.answer(
                case, request.user, ask, values.get("answer", ""), ip=client_ip(request)
            )
        except InvalidInput as invalid:
            return await case_page(request, case, 400, answer_errors=invalid.errors, values=values)
        except NotFound:
            raise NotFoundException() from None
        except Refused as refused:
            return await case_page(request, case, refused.status, answer_problem=refused.message)
        return redirect(f"/cases/{case.uid}", "request-answered")


async def case_page(
    request: Request, case: Case, status_code: int = 200, payment_error: str = "", **extra: Any
) -> Template:
    """The patient's case page (also re-rendered with a payment problem)."""
    specialty = request.app.state.plugins.specialty(case.specialty)
    payment = await payments.summary(case, specialty)
    return page(
        request,
        "cases/case.html",
        status_code,
        case=case,
        specialty=specialty,
        status=cases.patient_status(
            case,
            paid=payment.paid is not None,
            missing=reception.missing_uploads(case, specialty),
            by_post=reception.missing_materials(case, specialty),
            fee=payment.fee_display,
            report=await reports.patient_word(case, request.user),
        ),
        events=await cases.timeline(case),
        answers=cases.answers_of(case),
        questions=cases.questions_of(case),
        **await records_page(request, case, f"/cases/{case.uid}"),
        records_in=records_in(case),
        left_out=await documents.archives_with_left_out(case),
        can_upload=documents.may_add_records(request.user, case),
        unfinished=await resumable.unfinished(case),
        links=await provider_links.links_of(case),
        payment=payment,
        payment_error=payment_error,
        specialist=await assignment.patient_doctor(case),
        requests=await completeness.requests_of(case, specialty),
        materials=await completeness.materials_of(case, specialty),
        clock=await pauses.clock_of(case),
        please_call=(await urgent.urgency_of(case)).patient_should_call,
        values=extra.pop("values", {}),
        answer_errors=extra.pop("answer_errors", {}),
        **extra,
    )


ROUTES = [CaseController]

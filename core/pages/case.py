"""The patient's case page: where the case stands, its records, payment, links and timeline.

It shows several domains at once, so it lives above them; the forms on it that are answered by
this same page (choosing how to pay) live here too. Uploads, downloads and links are answered
by core/documents/routes.py.
"""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.assignment import service as assignment
from core.cases import service as cases
from core.cases.reception import records_in
from core.cases.tables import Case
from core.documents import links as provider_links
from core.documents import resumable
from core.documents import service as documents
from core.pages.common import own_case, records_page
from core.payments import service as payments
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


async def case_page(
    request: Request, case: Case, status_code: int = 200, payment_error: str = ""
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
            case, paid=payment.paid is not None, missing=payment.missing, fee=payment.fee_display
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
    )


ROUTES = [CaseController]

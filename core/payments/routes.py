"""Payment pages and endpoints. Thin: the rules live in core.payments.service.

- the patient pays from the case page (core/pages/case.py), is sent to the provider's checkout
  and comes back to the case page, which says "paid" only once an event confirmed it;
- `/payments/sandbox/{payment}` is the test checkout; its buttons send a signed notification
  through the same webhook code as a real provider;
- `/payments/webhooks/{provider}` takes providers' notifications (no session, no CSRF: each
  provider verifies its own signature over the raw body);
- receipts are PDFs, for the patient and staff, and every download is audited;
- coordinators' pages (queues, a case, offline payments, refunds) are core/pages/staff.py;
- admins edit the fee schedule.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from core.cases import service as cases
from core.cases.tables import Case
from core.payment_providers import WebhookRejected
from core.payments import receipts
from core.payments import service as payments
from core.payments.builtin import SandboxProvider
from core.payments.tables import Payment
from core.roles import ADMIN, PATIENT
from core.security import record_denied, role_guard, signed_in
from core.web import client_ip, form_data, page, redirect


async def _own_payment(request: Request, payment_uid: str) -> tuple[Case, Payment]:
    try:
        return await payments.own_payment(request.user, payment_uid)
    except cases.CaseNotFound:
        await record_denied(request, reason="not_owner_or_missing")
        raise NotFoundException() from None


class ReceiptController(Controller):
    path = "/cases/{uid:str}/payments/{payment:str}/receipt"
    guards = [signed_in]

    @get("/")
    async def receipt(
        self, request: Request, uid: FromPath[str], payment: FromPath[str]
    ) -> Response:
        """The receipt PDF: the owning patient, coordinators and admins (audited)."""
        try:
            case, found = await payments.readable_payment(request.user, uid, payment)
        except cases.CaseNotFound:
            await record_denied(request, reason="not_owner_or_missing")
            raise NotFoundException() from None
        specialty = request.app.state.plugins.specialty(case.specialty)
        try:
            pdf = await receipts.receipt_pdf(
                case,
                found,
                specialty.title if specialty else case.specialty,
                reader=request.user,
                ip=client_ip(request),
            )
        except receipts.ReceiptUnavailable:
            raise NotFoundException() from None
        return Response(
            pdf,
            media_type="application/pdf",
            headers={
                "content-disposition": f'attachment; filename="receipt-{found.receipt_number}.pdf"',
                "cache-control": "no-store",
            },
        )


class SandboxController(Controller):
    """The test checkout: clearly labelled, owner only, and never in production."""

    path = "/payments/sandbox/{payment:str}"
    guards = [role_guard(PATIENT)]

    def _provider(self) -> SandboxProvider:
        chosen = payments.providers().get("sandbox")
        if not isinstance(chosen, SandboxProvider):
            raise NotFoundException()
        return chosen

    @get("/")
    async def checkout(self, request: Request, payment: FromPath[str]) -> Template | Redirect:
        self._provider()
        case, found = await _own_payment(request, payment)
        if found.status != payments.PENDING:
            return redirect(f"/cases/{case.uid}#payment")
        return page(
            request,
            "payments/sandbox.html",
            case=case,
            payment=found,
            amount=payments.money(found.amount_minor, found.currency),
        )

    @post("/")
    async def choose(self, request: Request, payment: FromPath[str]) -> Redirect:
        sandbox = self._provider()
        case, found = await _own_payment(request, payment)
        outcome = (await form_data(request)).get("outcome", "")
        back = f"/cases/{case.uid}"
        if outcome not in ("succeed", "fail", "expire") or found.status != payments.PENDING:
            return redirect(back + "#payment", "payment-abandoned")
        headers, body = sandbox.notification(
            provider_ref=(found.provider_ref or "").partition(":")[2],
            outcome=outcome,
            amount_minor=found.amount_minor,
            currency=found.currency,
            event_id=f"sbx_evt_{found.uid}_{outcome}",
        )
        # The same path a provider's notification takes: verified, deduplicated, applied.
        await payments.receive_webhook("sandbox", headers, body)
        notice = {"succeed": "payment-returned", "fail": "payment-failed"}.get(
            outcome, "payment-abandoned"
        )
        return redirect(back + "#payment", notice)


class WebhookController(Controller):
    path = "/payments/webhooks"

    @post("/{provider:str}", opt={"exclude_from_csrf": True})
    async def receive(self, request: Request, provider: FromPath[str]) -> Response:
        body = await request.body()  # the raw bytes: signatures are over exactly these
        headers = {key.lower(): value for key, value in request.headers.items()}
        try:
            await payments.receive_webhook(provider, headers, body)
        except WebhookRejected:
            return Response({"error": "rejected"}, status_code=400)
        except payments.RetryLater:
            return Response({"error": "retry later"}, status_code=503)
        return Response({"received": True}, status_code=200)


# Admin: the fee schedule --------------------------------------------------------------------------


class FeeController(Controller):
    path = "/admin/fees"
    guards = [role_guard(ADMIN)]

    def _specialties(self, request: Request) -> dict[str, str]:
        return {s.slug: s.title for s in request.app.state.plugins.specialties()}

    async def _list(self, request: Request, status: int = 200, **extra: Any) -> Template:
        return page(
            request,
            "payments/fees.html",
            status,
            rules=await payments.fee_rules(),
            money=payments.money,
            specialties=self._specialties(request),
            values=extra.pop("values", {"active": "on"}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    @get("/")
    async def index(self, request: Request) -> Template:
        return await self._list(request)

    @post("/")
    async def add(self, request: Request) -> Template | Redirect:
        values = await form_data(request)
        values.setdefault("active", "")  # an unticked checkbox sends nothing
        try:
            await payments.save_rule(
                values,
                known_specialties=set(self._specialties(request)),
                by=request.user,
                ip=client_ip(request),
            )
        except payments.InvalidInput as invalid:
            return await self._list(request, 400, values=values, errors=invalid.errors)
        return redirect("/admin/fees", "fee-saved")

    @get("/{rule:str}")
    async def edit(self, request: Request, rule: FromPath[str]) -> Template:
        found = await payments.get_rule(rule)
        if found is None:
            raise NotFoundException()
        values = {
            "label": found.label,
            "country": found.country,
            "specialty": found.specialty,
            "currency": found.currency,
            "amount": payments.amount_text(found.amount_minor, found.currency),
            "active": "on" if found.active else "",
        }
        return page(
            request,
            "payments/fee_form.html",
            rule=found,
            values=values,
            errors={},
            specialties=self._specialties(request),
        )

    @post("/{rule:str}")
    async def update(self, request: Request, rule: FromPath[str]) -> Template | Redirect:
        found = await payments.get_rule(rule)
        if found is None:
            raise NotFoundException()
        values = await form_data(request)
        values.setdefault("active", "")
        try:
            await payments.save_rule(
                values,
                known_specialties=set(self._specialties(request)),
                by=request.user,
                ip=client_ip(request),
                rule_uid=rule,
            )
        except payments.InvalidInput as invalid:
            return page(
                request,
                "payments/fee_form.html",
                400,
                rule=found,
                values=values,
                errors=invalid.errors,
                specialties=self._specialties(request),
            )
        return redirect("/admin/fees", "fee-saved")


ROUTES = [ReceiptController, SandboxController, WebhookController, FeeController]

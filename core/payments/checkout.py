"""Paying: an attempt per provider, its checkout, and staff recording an offline payment."""

from __future__ import annotations

from collections.abc import Mapping

from core import clock, context, db
from core.accounts.tables import User
from core.cases import service as cases
from core.cases import states
from core.cases.tables import Case
from core.errors import InvalidInput
from core.payment_providers import (
    FAILED,
    SUCCEEDED,
    Checkout,
    PaymentEvent,
    PaymentProvider,
    ProviderError,
)
from core.payments.fees import case_fee
from core.payments.gateways import close_checkouts, provider, providers
from core.payments.ledger import (
    PAID_STATUSES,
    PENDING,
    PaymentRefused,
    audit_payment,
    ledger_entry,
    note_on_timeline,
    payments_of,
)
from core.payments.money import money, parse_amount
from core.payments.notices import settle
from core.payments.tables import (
    Payment,
)
from core.roles import ADMIN, COORDINATOR, PATIENT


async def start_payment(case: Case, patient: User, provider_name: str, *, ip: str | None):
    """Open (or reuse) a payment attempt and start the provider's checkout.

    A double click or a retry finds the open attempt and sends the same idempotency key, so
    the provider returns the same checkout. Returns the payment; `checkout_url` is where to go
    (empty for offline payment). A provider error leaves the case payable and says so.
    """
    if case.patient != patient.id or patient.role != PATIENT:
        raise cases.CaseNotFound
    chosen = providers().get(provider_name)
    if chosen is None:
        raise PaymentRefused("Choose one of the ways to pay shown on the page.")
    payment = await open_attempt(case, chosen)
    if payment.checkout_url or (payment.provider_ref and not chosen.online):
        return payment
    settings = context.settings()
    fee = await case_fee(case)
    assert fee is not None
    back = f"{settings.base_url}/cases/{case.uid}"
    checkout = Checkout(
        payment_uid=str(payment.uid),
        case_reference=case.reference,
        description=f"Second opinion {case.reference}",
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        idempotency_key=payment.idempotency_key,
        success_url=f"{back}?notice=payment-returned#payment",
        cancel_url=f"{back}?notice=payment-abandoned#payment",
        customer_email=patient.email,
    )
    try:
        started = await chosen.start_checkout(checkout)
    except ProviderError as error:
        await fail_attempt(payment, error.message)
        raise PaymentRefused(error.message) from None
    redirect = started.redirect_url or ""  # a path ("/payments/sandbox/…") stays on this site
    payment.provider_ref = f"{chosen.name}:{started.provider_ref}"
    async with db.transaction():
        # Kept whatever the attempt's state: a payment made at this checkout is found (and
        # refunded, if the case no longer takes payments) by this reference.
        await Payment.update({Payment.provider_ref: payment.provider_ref}).where(
            Payment.id == payment.id
        )
        still_open = (
            await Payment.update({Payment.checkout_url: redirect, Payment.updated_at: clock.now()})
            .where((Payment.id == payment.id) & (Payment.status == PENDING))
            .returning(Payment.id)
        )
        if not still_open:  # paid another way, declined or cancelled while the checkout started
            closing = [payment]
        else:
            closing = []
            await audit_payment(
                "payment.start",
                payment,
                case,
                actor=patient,
                ip=ip,
                details={"provider": chosen.name, "fee": money(payment.amount_minor, fee.currency)},
            )
    if closing:
        await close_checkouts(closing)
        raise PaymentRefused("This case cannot be paid for now.")
    payment.checkout_url = redirect
    return payment


async def open_attempt(case: Case, chosen: PaymentProvider) -> Payment:
    for _ in range(3):  # a concurrent first click may take the same attempt number
        async with db.transaction():
            current = await Case.select(Case.status).where(Case.id == case.id).first()
            if current is None or current["status"] != states.SUBMITTED:
                raise PaymentRefused("This case cannot be paid for now.")
            payments = await payments_of(case)
            if any(p.status in PAID_STATUSES for p in payments):
                raise PaymentRefused("This case is paid already. Nothing more is charged.")
            open_one = next(
                (p for p in payments if p.status == PENDING and p.provider == chosen.name), None
            )
            if open_one is not None:
                return open_one
            fee = await case_fee(case)
            if fee is None:
                raise PaymentRefused("No fee is set for this case. Please contact us.")
            payment = Payment(
                case=case.id,
                provider=chosen.name,
                status=PENDING,
                currency=fee.currency,
                amount_minor=fee.amount_minor,
                idempotency_key=f"consilium-{case.uid}-{len(payments) + 1}",
                method=chosen.method,
            )
            rows = await Payment.raw(
                'INSERT INTO payment_payment (uid, "case", provider, status, currency, '
                "amount_minor, idempotency_key, checkout_url, method, reference, message, "
                "provider_charge, created_at, updated_at) VALUES "
                "({}, {}, {}, {}, {}, {}, {}, '', {}, '', '', '', {}, {}) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                payment.uid,
                case.id,
                payment.provider,
                PENDING,
                payment.currency,
                payment.amount_minor,
                payment.idempotency_key,
                payment.method,
                clock.now(),
                clock.now(),
            )
        if rows:
            return await Payment.objects().where(Payment.id == rows[0]["id"]).first()
    raise PaymentRefused("Please try again in a moment.")


async def fail_attempt(payment: Payment, message: str) -> None:
    async with db.transaction():
        changed = (
            await Payment.update(
                {Payment.status: FAILED, Payment.message: message, Payment.updated_at: clock.now()}
            )
            .where((Payment.id == payment.id) & (Payment.status == PENDING))
            .returning(Payment.id)
        )
        if changed:
            await ledger_entry(payment, "failure", note=message)
            await note_on_timeline(
                payment, "payment_failed", "Payment failed. Nothing was charged."
            )


async def record_offline(
    case: Case,
    staff: User,
    values: Mapping[str, str],
    *,
    ip: str | None,
) -> Payment:
    """A coordinator saw a bank transfer or a payment at the desk: amount, method, reference."""
    if staff.role not in (COORDINATOR, ADMIN):
        raise PaymentRefused("Only coordinators record payments.")
    errors = {}
    method = values.get("method", "").strip()
    reference = values.get("reference", "").strip()
    if not method or len(method) > 60:
        errors["method"] = "Say how it was paid, such as “Bank transfer” or “Cash desk”."
    if not reference or len(reference) > 120:
        errors["reference"] = "Enter the bank or till reference."
    fee = await case_fee(case)
    if fee is None:
        raise PaymentRefused("This case has no fee yet: the patient has not submitted it.")
    amount = money(fee.amount_minor, fee.currency)
    currency = values.get("currency", "").strip().upper()
    received = parse_amount(values.get("amount", ""), currency)
    if received is None:
        errors["amount"] = f"Enter the amount received, such as {amount}."
    elif (received, currency) != (fee.amount_minor, fee.currency):
        errors["amount"] = f"The fee for this case is {amount}; record a payment of that amount."
    if errors:
        raise InvalidInput(errors)
    offline = provider("offline")
    payment = await open_attempt(case, offline)
    event = PaymentEvent(
        event_id=f"recorded-{payment.uid}",
        kind=SUCCEEDED,
        provider_ref="",
        amount_minor=received,
        currency=currency,
        method=method,
    )
    async with db.transaction():
        if payment.provider_ref is None:
            await Payment.update({Payment.provider_ref: f"offline:recorded-{payment.uid}"}).where(
                Payment.id == payment.id
            )
        settled = await settle(payment, event, actor=staff, ip=ip, reference=reference)
        if not settled.applied:
            raise PaymentRefused("This payment was recorded already.")
        await audit_payment(
            "payment.record_offline",
            payment,
            case,
            actor=staff,
            ip=ip,
            details={"method": method, "reference": reference, "fee": amount},
        )
    await settled.follow_up(payment, staff, ip)
    if settled.surplus:  # another payment settled first: the money is to be paid back
        raise PaymentRefused(
            "This case no longer takes a payment (it was paid another way, declined or "
            "cancelled). The payment is recorded and listed as a refund to pay back."
        )
    return payment

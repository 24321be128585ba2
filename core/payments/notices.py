"""Provider notices (webhooks): verified, applied once, in any order; settling a payment."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core import clock, context, db
from core.accounts.tables import User
from core.cases import reception, states
from core.cases.tables import Case
from core.facts import FeePaidChanged
from core.ids import parse_uuid
from core.notifications import service as notifications
from core.payment_providers import (
    EXPIRED,
    FAILED,
    REFUNDED,
    SUCCEEDED,
    PaymentEvent,
    PaymentProvider,
    WebhookRejected,
)
from core.payments.gateways import (
    cancel_open_attempts,
    close_checkouts,
    installed,
)
from core.payments.ledger import (
    CANCELLED,
    PAID_STATUSES,
    RANK,
    REFUND_DUE,
    RetryLater,
    advance,
    amount_of,
    audit_payment,
    ledger_entry,
    note_on_timeline,
)
from core.payments.money import money
from core.payments.refunds import refund
from core.payments.tables import (
    Payment,
    ReceiptCounter,
    WebhookEvent,
)


async def receive_webhook(provider_name: str, headers: Mapping[str, str], body: bytes) -> int:
    """Verify a provider's notification and apply its events; returns how many changed
    something. Raises WebhookRejected for anything that is not verifiably the provider's."""
    found = installed().get(provider_name)
    if found is None:
        raise WebhookRejected("unknown provider")
    events = found.parse_webhook(headers, body, time.time())
    applied = 0
    for event in events:
        applied += await apply_event(found, event)
    return applied


# A refund notice may overtake the notice of the payment it refunds (providers do not order
# deliveries). It is answered 503, so the provider delivers it again once the payment notice is
# applied, but only while the event is less than a day old: the payment notice normally follows
# within seconds, and a day also covers an outage of ours of several hours (the provider retries
# that notice too) while staying inside Stripe's three days of retries. After a day the payment
# notice is not coming (lost, or refused for a wrong amount): the refund is applied to the
# attempt as it is, so a late payment notice can no longer mark the case paid, and the audit log
# gets a failure row for staff to reconcile. Refunds of charges that are not ours (another
# system on the same account: no payment of ours by charge or by payment_uid) are acknowledged
# and ignored at once.
OVERTAKING_REFUND_RETRY_SECONDS = 24 * 3600


@dataclass
class Settled:
    """What `settle` did, and the provider calls to make once its transaction committed (never
    while holding the case lock)."""

    applied: bool
    case: Case | None = None
    surplus: bool = False  # paid, but the case no longer takes payments: to be refunded
    closed: list[Payment] = field(default_factory=list)  # other open attempts, now cancelled

    async def follow_up(self, payment: Payment, actor: User | None, ip: str | None) -> None:
        if self.surplus and self.case is not None:
            await refund(payment, self.case, actor, ip=ip)
        await close_checkouts(self.closed)


async def apply_event(chosen: PaymentProvider, event: PaymentEvent) -> bool:
    """Apply one verified event exactly once; True when it changed something."""
    async with db.transaction():
        fresh = await WebhookEvent.raw(
            "INSERT INTO payment_webhook_event (event_key, kind, received_at) "
            "VALUES ({}, {}, {}) ON CONFLICT (event_key) DO NOTHING RETURNING id",
            f"{chosen.name}:{event.event_id}",
            event.kind,
            clock.now(),
        )
        if not fresh:
            return False  # delivered before (or right now, by a concurrent request)
        payment = await payment_for(chosen, event)
        if payment is None:
            return False  # not one of ours (another system on the same account)
        if event.kind == REFUNDED and RANK[payment.status] < RANK[SUCCEEDED]:
            since = event.created_at or payment.created_at.timestamp()
            if time.time() - since < OVERTAKING_REFUND_RETRY_SECONDS:
                # Roll back (the event id is not kept): the provider delivers it again.
                raise RetryLater
            return await refund_without_payment_notice(payment, event)
        if event.kind == SUCCEEDED:
            settled = await settle(payment, event, actor=None, ip=None)
        elif event.kind == REFUNDED:
            return await mark_refunded(payment, event)
        else:
            status = FAILED if event.kind == FAILED else CANCELLED
            message = event.message or (
                "The payment was not completed." if event.kind == EXPIRED else "The payment failed."
            )
            if not await advance(payment, status, message=message):
                return False
            await ledger_entry(payment, "failure", note=message)
            if status == FAILED:
                await note_on_timeline(
                    payment, "payment_failed", "Payment failed. Nothing was charged."
                )
            else:
                await note_on_timeline(
                    payment, "payment_not_completed", "Payment not completed. Nothing was charged."
                )
            return True
    await settled.follow_up(payment, None, None)
    return settled.applied


async def payment_for(chosen: PaymentProvider, event: PaymentEvent) -> Payment | None:
    def ours(condition: Any) -> Any:  # a new query each time: Piccolo's where() adds in place
        return Payment.objects().where((Payment.provider == chosen.name) & condition).first()

    if event.provider_ref:
        return await ours(Payment.provider_ref == f"{chosen.name}:{event.provider_ref}")
    found = None
    if event.charge_ref:
        found = await ours(Payment.provider_charge == event.charge_ref)
    if found is None and event.payment_uid:
        parsed = parse_uuid(event.payment_uid)
        if parsed is None:
            return None
        found = await ours(Payment.uid == parsed)
    return found


async def settle(
    payment: Payment,
    event: PaymentEvent,
    *,
    actor: User | None,
    ip: str | None,
    reference: str = "",
) -> Settled:
    """A payment arrived: check it against what was asked, mark it paid, receive the case.

    Money for a case that no longer takes payments (paid by another attempt, declined,
    cancelled) is recorded as received and moved to refund; the case is never paid twice.
    Runs inside the caller's transaction; the caller runs `follow_up` after the commit."""
    case = await reception.locked_case(payment.case)  # first: every settle of this case waits here
    if event.amount_minor != payment.amount_minor or event.currency != payment.currency:
        note = f"Received {money(event.amount_minor, event.currency or '???')}"
        if await ledger_entry(
            payment, "mismatch", note=note, key=f"{payment.uid}:mismatch:{event.event_id}"
        ):
            await audit_payment(
                "payment.mismatch",
                payment,
                case,
                outcome="failure",
                details={"expected": money(payment.amount_minor, payment.currency), "got": note},
            )
        return Settled(applied=False)
    values: dict[str, Any] = {"paid_at": clock.now()}
    if event.charge_ref:
        values["provider_charge"] = event.charge_ref
    if event.method:
        values["method"] = event.method
    if reference:
        values["reference"] = reference
    if actor is not None:
        values["recorded_by"] = actor.id
    if case is None or not await advance(payment, SUCCEEDED, **values):
        return Settled(applied=False)
    payment.receipt_number = await next_receipt_number()
    await Payment.update({Payment.receipt_number: payment.receipt_number}).where(
        Payment.id == payment.id
    )
    await ledger_entry(payment, "charge", note=event.method or payment.method)
    paid_before = await Payment.exists().where(
        (Payment.case == case.id)
        & (Payment.id != payment.id)
        & Payment.status.is_in(list(PAID_STATUSES))
    )
    if paid_before or case.status != states.SUBMITTED:
        why = "paid already" if paid_before else case.status
        await advance(payment, REFUND_DUE, message=f"Arrived when the case was {why}: refunded.")
        await note_on_timeline(
            payment,
            "payment",
            f"Payment received: {amount_of(payment)}. It was not needed, so it will be refunded.",
            actor,
        )
        await audit_payment(
            "payment.surplus",
            payment,
            case,
            actor=actor,
            ip=ip,
            outcome="failure",
            details={
                "provider": payment.provider,
                "fee": money(payment.amount_minor, payment.currency),
                "case": why,
            },
        )
        return Settled(applied=True, case=case, surplus=True)
    # Before the audit row: its chain lock is always taken last (after case and payment rows).
    closed = await cancel_open_attempts(case, "Not needed: the fee was paid another way.")
    await note_on_timeline(payment, "payment", f"Payment received: {amount_of(payment)}", actor)
    await audit_payment(
        "payment.succeeded",
        payment,
        case,
        actor=actor,
        ip=ip,
        details={
            "provider": payment.provider,
            "fee": money(payment.amount_minor, payment.currency),
        },
    )
    patient = await User.objects().where(User.id == case.patient).first()
    await notifications.enqueue(
        to=patient.email,
        template="payment_received",
        context={"reference": case.reference, "case_url": reception.case_url(case)},
    )
    await tell_cases(case.id)  # cases decides whether the case is now received
    return Settled(applied=True, case=case, closed=closed)


async def next_receipt_number() -> str:
    year = clock.now().year
    return f"R-{year}-{await db.next_in_year(ReceiptCounter, year):05d}"


async def mark_refunded(payment: Payment, event: PaymentEvent) -> bool:
    await reception.locked_case(payment.case)  # first, as when settling: one lock order
    if not await advance(payment, REFUNDED):
        return False
    await ledger_entry(payment, "refund", note=event.charge_ref)
    await note_on_timeline(payment, "refund", f"Refunded: {amount_of(payment)}")
    await tell_cases(payment.case)
    return True


async def tell_cases(case_id: int) -> None:
    """Tell cases whether the fee of the case is paid now (a payment settled, or the one that
    paid was refunded): it owns what follows (received, or no longer payable)."""
    paid = await Payment.exists().where(
        (Payment.case == case_id) & Payment.status.is_in(list(PAID_STATUSES))
    )
    await context.current().events.publish(FeePaidChanged(case_id, paid))


async def refund_without_payment_notice(payment: Payment, event: PaymentEvent) -> bool:
    """A refund whose payment notice never came (see OVERTAKING_REFUND_RETRY_SECONDS): the
    attempt ends refunded, so it can no longer make the case paid; staff reconcile it."""
    values = {"provider_charge": event.charge_ref} if event.charge_ref else {}
    if not await advance(payment, REFUNDED, message="Refunded by the payment service.", **values):
        return False
    await ledger_entry(payment, "refund", note=event.charge_ref)
    await note_on_timeline(payment, "refund", f"Refunded: {amount_of(payment)}")
    await audit_payment(
        "payment.refund_unmatched",
        payment,
        None,
        outcome="failure",
        details={
            "provider": payment.provider,
            "refunded": money(event.amount_minor, event.currency),
        },
    )
    return True

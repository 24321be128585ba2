"""Refunds: through the provider that took the money, or paid back by staff by hand."""

from __future__ import annotations

from core import clock, db
from core.accounts.tables import User
from core.cases import service as cases
from core.cases import states
from core.cases.tables import Case
from core.errors import InvalidInput
from core.payment_providers import (
    REFUNDED,
    SUCCEEDED,
    ProviderError,
    Refund,
)
from core.payments.gateways import provider
from core.payments.ledger import (
    REFUND_DUE,
    REFUND_PENDING,
    PaymentRefused,
    advance,
    amount_of,
    audit_payment,
    ledger_entry,
    note_on_timeline,
    payments_of,
)
from core.payments.tables import (
    Payment,
)
from core.roles import ADMIN, COORDINATOR


async def refund_all(case: Case, actor: User | None, *, ip: str | None) -> list[Payment]:
    """Refund what must go back, each through its provider; safe to repeat (staff retry it).

    A declined or cancelled case: every paid (or refund-failed) payment. Any other case: the
    payments that arrived after it was paid already and whose refund failed (refund due)."""
    current = await Case.select(Case.status).where(Case.id == case.id).first()
    closed = current is not None and current["status"] in (states.DECLINED, states.CANCELLED)
    due = [
        payment
        for payment in await payments_of(case)
        if payment.status == REFUND_DUE or (closed and payment.status == SUCCEEDED)
    ]
    if not due and not closed:
        raise PaymentRefused("No payment of this case is waiting for a refund.")
    return [await refund(payment, case, actor, ip=ip) for payment in due]


async def cases_with_refunds_due(
    *,
    limit: int | None = None,
    after: cases.CaseKey | None = None,
    before: cases.CaseKey | None = None,
) -> list[cases.CaseLine]:
    """Cases with a payment whose refund failed or is for staff to pay back (staff queue), in
    `cases.REFUND_QUEUE` order, a page at a time (see `cases.cases_page`): one query."""
    due = Payment.select(Payment.case).where(Payment.status == REFUND_DUE)
    return await cases.cases_page(
        Case.id.is_in(due), cases.REFUND_QUEUE, limit=limit, after=after, before=before
    )


async def refund(payment: Payment, case: Case, staff: User | None, *, ip: str | None) -> Payment:
    chosen = provider(payment.provider)
    request = Refund(
        payment_uid=str(payment.uid),
        provider_ref=(payment.provider_ref or "").partition(":")[2],
        charge_ref=payment.provider_charge,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        idempotency_key=f"consilium-refund-{payment.uid}",
    )
    try:
        result = await chosen.refund(request)
    except ProviderError as error:
        async with db.transaction():
            if await refund_due(payment, error.message):
                await note_on_timeline(payment, "refund", staff_refund_note(payment), staff)
            await audit_payment(
                "payment.refund",
                payment,
                case,
                actor=staff,
                ip=ip,
                outcome="failure",
                details={"provider": payment.provider},
            )
        return payment
    async with db.transaction():
        if result.status == "refunded":
            if await advance(payment, REFUNDED, message=""):
                await ledger_entry(payment, "refund", note=result.reference)
                await note_on_timeline(payment, "refund", f"Refunded: {amount_of(payment)}", staff)
        elif result.status == "pending":
            if await advance(payment, REFUND_PENDING, message=""):
                await ledger_entry(payment, "refund_pending", note=result.reference)
                note = f"Refund of {amount_of(payment)} sent. It can take a few days to reach you."
                await note_on_timeline(payment, "refund", note, staff)
        else:
            if await refund_due(payment, "To be paid back by our staff."):
                await note_on_timeline(payment, "refund", staff_refund_note(payment), staff)
            await ledger_entry(payment, "manual_refund")
        await audit_payment(
            "payment.refund",
            payment,
            case,
            actor=staff,
            ip=ip,
            details={"provider": payment.provider, "result": result.status},
        )
    return payment


async def refund_due(payment: Payment, message: str) -> bool:
    """Refund due (paid, or due already): staff retry it or pay it back by hand. True when the
    payment was not waiting for staff before."""
    if await advance(payment, REFUND_DUE, message=message):
        return True
    await Payment.update({Payment.message: message, Payment.updated_at: clock.now()}).where(
        (Payment.id == payment.id) & (Payment.status == REFUND_DUE)
    )
    return False


def staff_refund_note(payment: Payment) -> str:
    return f"Refund of {amount_of(payment)} to be paid back by our staff."


async def mark_refunded_by_hand(
    case: Case, payment_uid: str, staff: User, reference: str, *, ip: str | None
) -> Payment:
    """Staff paid an offline payment back (or finished a refund the provider could not do)."""
    if staff.role not in (COORDINATOR, ADMIN):
        raise PaymentRefused("Only coordinators record refunds.")
    reference = reference.strip()
    if not reference or len(reference) > 120:
        raise InvalidInput({"refund_reference": "Enter the reference of the refund."})
    payment = next((p for p in await payments_of(case) if str(p.uid) == payment_uid), None)
    if payment is None or payment.status != REFUND_DUE:
        raise PaymentRefused("This payment is not waiting for a refund.")
    async with db.transaction():
        if await advance(payment, REFUNDED, message=""):
            await ledger_entry(payment, "refund", note=reference)
            await note_on_timeline(payment, "refund", f"Refunded: {amount_of(payment)}", staff)
        await audit_payment(
            "payment.refund_by_hand",
            payment,
            case,
            actor=staff,
            ip=ip,
            details={"reference": reference},
        )
    return payment

"""Payment statuses and what every money change writes: the payment's forward-only status,
the ledger row, the patient's timeline entry and the audit row."""

from __future__ import annotations

import logging
from typing import Any

from core import clock
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import service as cases
from core.cases.tables import Case
from core.errors import Refused
from core.payment_providers import (
    FAILED,
    REFUNDED,
    SUCCEEDED,
)
from core.payments.money import money
from core.payments.tables import (
    LedgerEntry,
    Payment,
)

log = logging.getLogger("consilium.payments")

# Payment statuses, and how far along each is: a status only ever moves to a higher rank.
PENDING, CANCELLED = "pending", "cancelled"
REFUND_PENDING, REFUND_DUE = "refund_pending", "refund_due"
RANK = {
    PENDING: 0,
    FAILED: 1,
    CANCELLED: 1,
    SUCCEEDED: 2,
    REFUND_DUE: 3,  # a refund that failed (or waits for staff) can still go to pending or done
    REFUND_PENDING: 4,
    REFUNDED: 5,
}
PAID_STATUSES = (SUCCEEDED,)
REFUND_STATUSES = (REFUNDED, REFUND_PENDING, REFUND_DUE)
# Ledger entries whose amount moved (shown with it in the payment history).
MONEY_MOVED = ("charge", "refund", "manual_refund", "refund_pending")
STATUS_LABELS = {
    PENDING: "Waiting for payment",
    FAILED: "Failed",
    CANCELLED: "Not completed",
    SUCCEEDED: "Paid",
    REFUND_PENDING: "Refund on its way",
    REFUND_DUE: "Refund to be paid by our staff",
    REFUNDED: "Refunded",
}
LEDGER_LABELS = {
    "charge": "Payment received",
    "failure": "Payment failed",
    "refund": "Refunded",
    "refund_pending": "Refund requested",
    "manual_refund": "Refund to be paid back by staff",
    "mismatch": "Amount did not match the fee (not accepted)",
}


class PaymentRefused(Refused):
    """Not possible now; `message` says why, for the person."""


class RetryLater(Exception):
    """An event that cannot be applied yet; the provider is asked to deliver it again."""


async def payments_of(case: Case) -> list[Payment]:
    return (
        await Payment.objects()
        .where(Payment.case == case.id)
        .order_by(Payment.created_at, ascending=False)
    )


async def ledger_entry(
    payment: Payment, kind: str, *, note: str = "", key: str | None = None
) -> bool:
    """Add a ledger row once: False when a row with this key exists already."""
    rows = await LedgerEntry.raw(
        'INSERT INTO payment_ledger (entry_key, "case", payment, kind, currency, amount_minor, '
        "provider, note, at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}) "
        "ON CONFLICT (entry_key) DO NOTHING RETURNING id",
        key or f"{payment.uid}:{kind}",
        payment.case,
        payment.id,
        kind,
        payment.currency,
        payment.amount_minor,
        payment.provider,
        note,
        clock.now(),
    )
    return bool(rows)


async def advance(payment: Payment, status: str, **values: Any) -> bool:
    """Move the payment to `status` if that is forward from where it is now."""
    lower = [name for name, rank in RANK.items() if rank < RANK[status]]
    columns = {Payment.status: status, Payment.updated_at: clock.now()}
    columns |= {getattr(Payment, name): value for name, value in values.items()}
    changed = (
        await Payment.update(columns)
        .where((Payment.id == payment.id) & Payment.status.is_in(lower))
        .returning(Payment.id)
    )
    if changed:
        payment.status = status
        for name, value in values.items():
            setattr(payment, name, value)
    return bool(changed)


async def note_on_timeline(
    payment: Payment, action: str, note: str, actor: User | None = None
) -> None:
    """The patient's timeline entry about this payment, in the caller's transaction (before its
    audit row: the audit chain's lock is always taken last)."""
    await cases.note_event(payment.case, action, note, actor=actor)


def amount_of(payment: Payment) -> str:
    return money(payment.amount_minor, payment.currency)


async def audit_payment(action: str, payment: Payment, case: Case | None, **fields: Any) -> None:
    """One audit row about a payment (and its case)."""
    if case is None:
        case = await Case.objects().where(Case.id == payment.case).first()
    await audit.record_about(action, payment, case=case, **fields)

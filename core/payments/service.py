"""Fees, payments, the ledger and refunds.

Rules (docs/security.md 23):
- The fee is fixed on the case at submission; the schedule may change later without effect.
- A payment succeeds only from a verified provider event (or a coordinator's record of an
  offline payment), never from the browser coming back from a checkout.
- Each event is applied once: its id is inserted in the same transaction as its effect, and
  ledger rows carry a unique key, so duplicate or concurrent deliveries change nothing.
- Events may arrive in any order: a payment's status only moves forward (a late "expired" never
  undoes "succeeded"), and amount and currency must match what was asked for.
- Payments tells cases whether a case's fee is paid (`FeePaidChanged`, core/facts.py) in the
  transaction that settles or refunds it; cases decides whether the case is received.
- A case is paid once. Settling a payment locks the case row first (PostgreSQL: SELECT … FOR NO
  KEY UPDATE; SQLite's IMMEDIATE transactions already run one writer at a time): money that
  arrives for a case already paid, declined or cancelled is recorded as received and refunded.
  When cases declines or cancels a case (`CaseClosedEarly`), payments closes the open
  checkouts and refunds what was paid, after the commit.

This module is the domain's public surface: the rules live in its modules —
money (amounts), ledger (statuses and what each change writes), fees (the schedule, the fee
fixed at submission), gateways (the providers), checkout (paying), notices (provider events,
settling), refunds, queries (what pages show) and reactions (facts from cases).
"""

from __future__ import annotations

from core.errors import InvalidInput
from core.payment_providers import EXPIRED, FAILED, REFUNDED, SUCCEEDED
from core.payments.checkout import (
    fail_attempt,
    open_attempt,
    record_offline,
    start_payment,
)
from core.payments.fees import (
    Quote,
    case_fee,
    check_rule,
    fee_rules,
    fix_fee,
    get_rule,
    quote,
    quote_or_none,
    save_rule,
)
from core.payments.gateways import (
    cancel_open_attempts,
    close_checkouts,
    installed,
    provider,
    provider_online,
    providers,
)
from core.payments.ledger import (
    CANCELLED,
    LEDGER_LABELS,
    PAID_STATUSES,
    PENDING,
    RANK,
    REFUND_DUE,
    REFUND_PENDING,
    STATUS_LABELS,
    PaymentRefused,
    RetryLater,
    advance,
    amount_of,
    audit_payment,
    ledger_entry,
    note_on_timeline,
    payments_of,
)
from core.payments.money import (
    CURRENCY_DIGITS,
    amount_text,
    money,
    parse_amount,
)
from core.payments.notices import (
    OVERTAKING_REFUND_RETRY_SECONDS,
    Settled,
    apply_event,
    mark_refunded,
    next_receipt_number,
    payment_for,
    receive_webhook,
    refund_without_payment_notice,
    settle,
    tell_cases,
)
from core.payments.queries import (
    PaymentSummary,
    may_see_payments,
    own_payment,
    readable_payment,
    summary,
)
from core.payments.reactions import (
    on_case_closed_early,
    on_case_submitted,
    subscribe,
)
from core.payments.refunds import (
    cases_with_refunds_due,
    mark_refunded_by_hand,
    refund,
    refund_all,
    refund_due,
    staff_refund_note,
)

__all__ = [
    "CANCELLED",
    "CURRENCY_DIGITS",
    "EXPIRED",
    "FAILED",
    "LEDGER_LABELS",
    "OVERTAKING_REFUND_RETRY_SECONDS",
    "PAID_STATUSES",
    "PENDING",
    "RANK",
    "REFUNDED",
    "REFUND_DUE",
    "REFUND_PENDING",
    "STATUS_LABELS",
    "SUCCEEDED",
    "InvalidInput",
    "PaymentRefused",
    "PaymentSummary",
    "Quote",
    "RetryLater",
    "Settled",
    "advance",
    "amount_of",
    "amount_text",
    "apply_event",
    "audit_payment",
    "cancel_open_attempts",
    "case_fee",
    "cases_with_refunds_due",
    "check_rule",
    "close_checkouts",
    "fail_attempt",
    "fee_rules",
    "fix_fee",
    "get_rule",
    "installed",
    "ledger_entry",
    "mark_refunded",
    "mark_refunded_by_hand",
    "may_see_payments",
    "money",
    "next_receipt_number",
    "note_on_timeline",
    "on_case_closed_early",
    "on_case_submitted",
    "open_attempt",
    "own_payment",
    "parse_amount",
    "payment_for",
    "payments_of",
    "provider",
    "provider_online",
    "providers",
    "quote",
    "quote_or_none",
    "readable_payment",
    "receive_webhook",
    "record_offline",
    "refund",
    "refund_all",
    "refund_due",
    "refund_without_payment_notice",
    "save_rule",
    "settle",
    "staff_refund_note",
    "start_payment",
    "subscribe",
    "summary",
    "tell_cases",
]

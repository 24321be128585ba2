from piccolo.columns import (
    UUID,
    Boolean,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.accounts.tables import User
from core.cases.tables import Case


class FeeRule(Table, tablename="payment_fee_rule"):
    """One line of the fee schedule. The most specific matching rule wins:
    country and specialty, then country, then specialty, then the default ("" for both)."""

    uid = UUID(unique=True, index=True)
    label = Varchar(length=100)
    country = Varchar(length=2, default="")  # ISO 3166-1 alpha-2; "" = any country
    specialty = Varchar(length=32, default="")  # specialty slug; "" = any specialty
    currency = Varchar(length=3)  # ISO 4217
    amount_minor = Integer()  # integer minor units (paisa, cents)
    active = Boolean(default=True)
    updated_at = Timestamptz(default=TimestamptzNow())


class CaseFee(Table, tablename="payment_case_fee"):
    """The fee fixed on a case when the patient submitted it; later schedule changes leave it."""

    case = ForeignKey(Case, on_delete=OnDelete.cascade, unique=True, index=True)
    label = Varchar(length=100)
    currency = Varchar(length=3)
    amount_minor = Integer()
    fixed_at = Timestamptz(default=TimestamptzNow())


class Payment(Table, tablename="payment_payment"):
    """One attempt to pay a case's fee through one provider."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.restrict, index=True)
    provider = Varchar(length=32)
    status = Varchar(length=20, default="pending", index=True)
    currency = Varchar(length=3)
    amount_minor = Integer()
    # Deterministic per case and attempt: a retried request reuses the provider's object.
    idempotency_key = Varchar(length=80, unique=True)
    provider_ref = Varchar(length=255, null=True, default=None, unique=True)  # "provider:id"
    provider_charge = Varchar(length=255, default="")  # e.g. Stripe's payment_intent id
    checkout_url = Text(default="")
    method = Varchar(length=60, default="")  # "Card (test)", "Bank transfer"…
    reference = Varchar(length=120, default="")  # offline: the bank or till reference
    message = Text(default="")  # the last failure, in words a patient understands
    receipt_number = Varchar(length=20, null=True, default=None, unique=True)
    recorded_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    paid_at = Timestamptz(null=True, default=None)


class LedgerEntry(Table, tablename="payment_ledger"):
    """Every charge, failure and refund, never updated. `entry_key` makes each one unique
    (e.g. "<payment uid>:charge"), so a duplicate delivery cannot add a second row."""

    entry_key = Varchar(length=160, unique=True)
    case = ForeignKey(Case, on_delete=OnDelete.restrict, index=True)
    payment = ForeignKey(Payment, on_delete=OnDelete.restrict, index=True)
    kind = Varchar(length=20)  # charge | failure | refund | manual_refund | mismatch
    currency = Varchar(length=3)
    amount_minor = Integer()
    provider = Varchar(length=32)
    note = Text(default="")
    at = Timestamptz(default=TimestamptzNow())


class WebhookEvent(Table, tablename="payment_webhook_event"):
    """Provider events already applied, keyed "provider:event id": written in the same
    transaction as the effect, so a duplicate or concurrent delivery changes nothing."""

    event_key = Varchar(length=255, unique=True)
    kind = Varchar(length=80)
    received_at = Timestamptz(default=TimestamptzNow())


class ReceiptCounter(Table, tablename="payment_receipt_counter"):
    year = Integer(unique=True)
    last = Integer(default=0)

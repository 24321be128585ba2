"""Fees, payments, the ledger, refunds — and the move to `received`.

Rules (SECURITY.md 23):
- The fee is fixed on the case at submission; the schedule may change later without effect.
- A payment succeeds only from a verified provider event (or a coordinator's record of an
  offline payment), never from the browser coming back from a checkout.
- Each event is applied once: its id is inserted in the same transaction as its effect, and
  ledger rows carry a unique key, so duplicate or concurrent deliveries change nothing.
- Events may arrive in any order: a payment's status only moves forward (a late "expired" never
  undoes "succeeded"), and amount and currency must match what was asked for.
- When a case is paid and every required record is in, it moves to `received` in the same
  transaction, with its due date and the "received for review" email.
- A case is paid once. Settling a payment locks the case row first (PostgreSQL: SELECT … FOR NO
  KEY UPDATE; SQLite's IMMEDIATE transactions already run one writer at a time): money that
  arrives for a case already paid, declined or cancelled is recorded as received and refunded.
  Declining or cancelling closes the open checkouts, and refunds what was paid.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from core import db, runtime
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import service as cases
from core.cases import states
from core.cases.tables import Case
from core.cases.turnaround import add_working_days
from core.notifications import service as notifications
from core.payments.providers import (
    EXPIRED,
    FAILED,
    REFUNDED,
    SUCCEEDED,
    Checkout,
    PaymentEvent,
    PaymentProvider,
    ProviderError,
    Refund,
    WebhookRejected,
)
from core.payments.tables import (
    CaseFee,
    FeeRule,
    LedgerEntry,
    Payment,
    ReceiptCounter,
    WebhookEvent,
)
from core.security import ADMIN, COORDINATOR, PATIENT
from core.specialty import Specialty

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
CURRENCY_DIGITS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "OMR": 3}


class PaymentRefused(Exception):
    """Not possible now; `message` says why, for the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryLater(Exception):
    """An event that cannot be applied yet; the provider is asked to deliver it again."""


class InvalidInput(Exception):
    """A form with field errors ({field name: message}); the page re-renders with them."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(", ".join(errors.values()))
        self.errors = errors


def now() -> datetime:
    return datetime.now(UTC)


def amount_text(amount_minor: int, currency: str) -> str:
    """ "4,500" (whole rupees), "65.00": the number as people write it."""
    digits = CURRENCY_DIGITS.get(currency, 2)
    if (currency == "PKR" and amount_minor % 100 == 0) or digits == 0:
        return f"{amount_minor // 10**digits:,}"
    major, minor = divmod(amount_minor, 10**digits)
    return f"{major:,}.{minor:0{digits}d}"


def money(amount_minor: int, currency: str) -> str:
    """For people: "PKR 4,500", "USD 65.00"."""
    return f"{currency} {amount_text(amount_minor, currency)}"


def parse_amount(text: str, currency: str) -> int | None:
    """Minor units from what a person typed ("4,500", "65.00"), or None if it is not an amount."""
    digits = CURRENCY_DIGITS.get(currency, 2)
    whole, _, fraction = text.strip().replace(",", "").partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > digits:
        return None
    amount = int(whole) * 10**digits + int((fraction or "0").ljust(digits, "0"))
    return amount if 0 < amount <= 100_000_000_00 else None


# The fee schedule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    label: str
    currency: str
    amount_minor: int

    @property
    def display(self) -> str:
        return money(self.amount_minor, self.currency)


async def fee_rules(*, active_only: bool = False) -> list[FeeRule]:
    query = FeeRule.objects().order_by(FeeRule.country).order_by(FeeRule.specialty)
    if active_only:
        query = query.where(FeeRule.active.eq(True))
    return await query


def _specificity(rule: FeeRule) -> int:
    return (2 if rule.country else 0) + (1 if rule.specialty else 0)


async def quote(country: str, specialty: str) -> Quote:
    """The fee for a resident of `country` asking for `specialty`: the most specific rule."""
    matching = [
        rule
        for rule in await fee_rules(active_only=True)
        if rule.country in ("", country.upper()) and rule.specialty in ("", specialty)
    ]
    if not matching:
        raise PaymentRefused("No fee is set for this case. Please contact us.")
    best = max(matching, key=_specificity)
    return Quote(best.label, best.currency, best.amount_minor)


async def quote_or_none(country: str, specialty: str) -> Quote | None:
    """The fee a request would be asked for now (the wizard's review step), or None."""
    try:
        return await quote(country, specialty)
    except PaymentRefused:
        return None


def check_rule(values: Mapping[str, str], known_specialties: set[str]) -> tuple[dict, dict]:
    """Clean an admin's rule form: (values for the table, field errors)."""
    import pycountry

    errors: dict[str, str] = {}
    label = values.get("label", "").strip()
    if not label or len(label) > 100:
        errors["label"] = "Enter a short description, such as “Residents of Pakistan”."
    country = values.get("country", "").strip().upper()
    if country and pycountry.countries.get(alpha_2=country) is None:
        errors["country"] = "Enter a two-letter country code such as PK, or leave it empty."
    specialty = values.get("specialty", "").strip()
    if specialty and specialty not in known_specialties:
        errors["specialty"] = "Choose a specialty from the list, or any."
    currency = values.get("currency", "").strip().upper()
    if pycountry.currencies.get(alpha_3=currency) is None:
        errors["currency"] = "Enter a three-letter currency code such as PKR or USD."
    amount_minor = parse_amount(values.get("amount", ""), currency)
    if amount_minor is None:
        errors["amount"] = "Enter the amount as a number, such as 4500 or 65.00."
    clean = {
        "label": label,
        "country": country,
        "specialty": specialty,
        "currency": currency,
        "amount_minor": amount_minor,
        "active": values.get("active", "on") in ("on", "yes", "true", "1"),
    }
    return clean, errors


async def save_rule(
    values: Mapping[str, str],
    *,
    known_specialties: set[str],
    by: User,
    ip: str | None,
    rule_uid: str | None = None,
) -> FeeRule:
    """Add a rule (or change one); only admins; audited with before and after."""
    if by.role != ADMIN:
        raise PaymentRefused("Only admins change fees.")
    clean, errors = check_rule(values, known_specialties)
    async with db.transaction():
        existing = await get_rule(rule_uid) if rule_uid else None
        clash = FeeRule.objects().where(
            (FeeRule.country == clean["country"]) & (FeeRule.specialty == clean["specialty"])
        )
        if existing is not None:
            clash = clash.where(FeeRule.id != existing.id)
        if not errors and clean["active"] and await clash.where(FeeRule.active.eq(True)).first():
            errors["country"] = "An active rule for this country and specialty exists already."
        if not errors and existing is not None and not (existing.country or existing.specialty):
            if clean["country"] or clean["specialty"] or not clean["active"]:
                errors["active"] = "Keep one active rule for any country and any specialty."
        if errors:
            raise InvalidInput(errors)
        before = _rule_text(existing) if existing else ""
        if existing is None:
            rule = FeeRule(**clean)
            await FeeRule.insert(rule)
        else:
            rule = existing
            for name, value in clean.items():
                setattr(rule, name, value)
            rule.updated_at = now()
            await rule.save()
        await audit.record(
            "fee.change" if existing else "fee.create",
            actor=by,
            object_type="fee_rule",
            object_id=str(rule.uid),
            ip=ip,
            details={"before": before, "after": _rule_text(rule)},
        )
    return rule


async def get_rule(uid: str) -> FeeRule | None:
    try:
        parsed = uuid.UUID(str(uid))
    except ValueError:
        return None
    return await FeeRule.objects().where(FeeRule.uid == parsed).first()


def _rule_text(rule: FeeRule) -> str:
    where = rule.country or "any country"
    what = rule.specialty or "any specialty"
    state = "" if rule.active else " (inactive)"
    return f"{rule.label}: {money(rule.amount_minor, rule.currency)} for {where}, {what}{state}"


async def fix_fee(case: Case, patient: User) -> CaseFee:
    """Fix the fee on the case (at submission); later calls return what was fixed."""
    existing = await case_fee(case)
    if existing is not None:
        return existing
    offer = await quote(patient.country or "", case.specialty)
    fee = CaseFee(
        case=case.id, label=offer.label, currency=offer.currency, amount_minor=offer.amount_minor
    )
    await CaseFee.insert(fee)
    return fee


async def case_fee(case: Case) -> CaseFee | None:
    return await CaseFee.objects().where(CaseFee.case == case.id).first()


# Providers ------------------------------------------------------------------------------------


def _installed() -> dict[str, PaymentProvider]:
    """Every provider a plugin offers, listed in the settings or not (old payments need theirs
    for webhooks and refunds)."""
    return runtime.plugins().payment_providers(runtime.settings())


def providers() -> dict[str, PaymentProvider]:
    """The providers offered to patients, in the order the settings give."""
    available = _installed()
    return {n: available[n] for n in runtime.settings().payment_providers if n in available}


def provider(name: str) -> PaymentProvider:
    found = _installed().get(name)
    if found is None:
        raise PaymentRefused("That way of paying is not available.")
    return found


# What a page shows ----------------------------------------------------------------------------


@dataclass
class PaymentSummary:
    fee: CaseFee | None
    fee_display: str
    payments: list[Payment]
    ledger: list[LedgerEntry]
    paid: Payment | None
    open_offline: Payment | None  # waiting for staff to see a transfer
    payable: bool
    missing: list[str] = field(default_factory=list)  # required records not yet in
    providers: dict[str, PaymentProvider] = field(default_factory=dict)

    def status_label(self, payment: Payment) -> str:
        return STATUS_LABELS.get(payment.status, payment.status)

    def ledger_label(self, entry: LedgerEntry) -> str:
        return LEDGER_LABELS.get(entry.kind, entry.kind)


async def payments_of(case: Case) -> list[Payment]:
    return (
        await Payment.objects()
        .where(Payment.case == case.id)
        .order_by(Payment.created_at, ascending=False)
    )


async def summary(case: Case, specialty: Specialty | None) -> PaymentSummary:
    fee = await case_fee(case)
    payments = await payments_of(case)
    paid = next((p for p in payments if p.status in PAID_STATUSES), None)
    open_offline = next(
        (p for p in payments if p.status == PENDING and not provider_online(p.provider)), None
    )
    ledger = await LedgerEntry.objects().where(LedgerEntry.case == case.id).order_by(LedgerEntry.at)
    return PaymentSummary(
        fee=fee,
        fee_display=money(fee.amount_minor, fee.currency) if fee else "",
        payments=payments,
        ledger=ledger,
        paid=paid,
        open_offline=open_offline,
        payable=case.status == states.SUBMITTED and paid is None and fee is not None,
        missing=await missing_records(case, specialty) if specialty else [],
        providers=providers(),
    )


def provider_online(name: str) -> bool:
    found = _installed().get(name)
    return found.online if found else True


async def missing_records(case: Case, specialty: Specialty) -> list[str]:
    """Labels of the specialty's required records that no document of the case satisfies."""
    from core.documents import service as documents

    present = {doc.checklist_item for doc in await documents.documents_of(case)}
    return [
        item.label
        for item in specialty.required_documents
        if item.required and item.key not in present
    ]


def may_see_payments(user: User, case: Case) -> bool:
    """Payments and receipts: the owning patient, coordinators and admins (not doctors)."""
    return user.role in (COORDINATOR, ADMIN) or (user.role == PATIENT and case.patient == user.id)


async def readable_payment(user: User, case_uid: str, payment_uid: str) -> tuple[Case, Payment]:
    """The case and payment `user` may read; CaseNotFound otherwise (nothing is revealed)."""
    case = await cases.get_case(case_uid)
    if not may_see_payments(user, case):
        raise cases.CaseNotFound
    found = next((p for p in await payments_of(case) if str(p.uid) == payment_uid), None)
    if found is None:
        raise cases.CaseNotFound
    return case, found


async def own_payment(patient: User, payment_uid: str) -> tuple[Case, Payment]:
    """A payment of one of the patient's own cases; CaseNotFound otherwise."""
    try:
        parsed = uuid.UUID(payment_uid)
    except ValueError:
        raise cases.CaseNotFound from None
    payment = await Payment.objects().where(Payment.uid == parsed).first()
    if payment is None:
        raise cases.CaseNotFound
    case = await Case.objects().where(Case.id == payment.case).first()
    if case is None or case.patient != patient.id:
        raise cases.CaseNotFound
    return case, payment


# Paying ---------------------------------------------------------------------------------------


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
    payment = await _open_attempt(case, chosen)
    if payment.checkout_url or (payment.provider_ref and not chosen.online):
        return payment
    settings = runtime.settings()
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
        await _fail_attempt(payment, error.message)
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
            await Payment.update({Payment.checkout_url: redirect, Payment.updated_at: now()})
            .where((Payment.id == payment.id) & (Payment.status == PENDING))
            .returning(Payment.id)
        )
        if not still_open:  # paid another way, declined or cancelled while the checkout started
            closing = [payment]
        else:
            closing = []
            await _audit(
                "payment.start",
                payment,
                case,
                actor=patient,
                ip=ip,
                details={"provider": chosen.name, "fee": money(payment.amount_minor, fee.currency)},
            )
    if closing:
        await _close_checkouts(closing)
        raise PaymentRefused("This case cannot be paid for now.")
    payment.checkout_url = redirect
    return payment


async def _open_attempt(case: Case, chosen: PaymentProvider) -> Payment:
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
                now(),
                now(),
            )
        if rows:
            return await Payment.objects().where(Payment.id == rows[0]["id"]).first()
    raise PaymentRefused("Please try again in a moment.")


async def _fail_attempt(payment: Payment, message: str) -> None:
    async with db.transaction():
        changed = (
            await Payment.update(
                {Payment.status: FAILED, Payment.message: message, Payment.updated_at: now()}
            )
            .where((Payment.id == payment.id) & (Payment.status == PENDING))
            .returning(Payment.id)
        )
        if changed:
            await _ledger(payment, "failure", note=message)
            await _timeline(payment, "payment_failed", "Payment failed. Nothing was charged.")


async def _ledger(payment: Payment, kind: str, *, note: str = "", key: str | None = None) -> bool:
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
        now(),
    )
    return bool(rows)


# Provider events ------------------------------------------------------------------------------


async def receive_webhook(provider_name: str, headers: Mapping[str, str], body: bytes) -> int:
    """Verify a provider's notification and apply its events; returns how many changed
    something. Raises WebhookRejected for anything that is not verifiably the provider's."""
    found = _installed().get(provider_name)
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
class _Settled:
    """What `_settle` did, and the provider calls to make once its transaction committed (never
    while holding the case lock)."""

    applied: bool
    case: Case | None = None
    surplus: bool = False  # paid, but the case no longer takes payments: to be refunded
    closed: list[Payment] = field(default_factory=list)  # other open attempts, now cancelled

    async def follow_up(self, payment: Payment, actor: User | None, ip: str | None) -> None:
        if self.surplus and self.case is not None:
            await _refund(payment, self.case, actor, ip=ip)
        await _close_checkouts(self.closed)


async def apply_event(chosen: PaymentProvider, event: PaymentEvent) -> bool:
    """Apply one verified event exactly once; True when it changed something."""
    async with db.transaction():
        fresh = await WebhookEvent.raw(
            "INSERT INTO payment_webhook_event (event_key, kind, received_at) "
            "VALUES ({}, {}, {}) ON CONFLICT (event_key) DO NOTHING RETURNING id",
            f"{chosen.name}:{event.event_id}",
            event.kind,
            now(),
        )
        if not fresh:
            return False  # delivered before (or right now, by a concurrent request)
        payment = await _payment_for(chosen, event)
        if payment is None:
            return False  # not one of ours (another system on the same account)
        if event.kind == REFUNDED and RANK[payment.status] < RANK[SUCCEEDED]:
            since = event.created_at or payment.created_at.timestamp()
            if time.time() - since < OVERTAKING_REFUND_RETRY_SECONDS:
                # Roll back (the event id is not kept): the provider delivers it again.
                raise RetryLater
            return await _refund_without_payment_notice(payment, event)
        if event.kind == SUCCEEDED:
            settled = await _settle(payment, event, actor=None, ip=None)
        elif event.kind == REFUNDED:
            return await _mark_refunded(payment, event)
        else:
            status = FAILED if event.kind == FAILED else CANCELLED
            message = event.message or (
                "The payment was not completed." if event.kind == EXPIRED else "The payment failed."
            )
            if not await _advance(payment, status, message=message):
                return False
            await _ledger(payment, "failure", note=message)
            if status == FAILED:
                await _timeline(payment, "payment_failed", "Payment failed. Nothing was charged.")
            else:
                await _timeline(
                    payment, "payment_not_completed", "Payment not completed. Nothing was charged."
                )
            return True
    await settled.follow_up(payment, None, None)
    return settled.applied


async def _payment_for(chosen: PaymentProvider, event: PaymentEvent) -> Payment | None:
    def ours(condition: Any) -> Any:  # a new query each time: Piccolo's where() adds in place
        return Payment.objects().where((Payment.provider == chosen.name) & condition).first()

    if event.provider_ref:
        return await ours(Payment.provider_ref == f"{chosen.name}:{event.provider_ref}")
    found = None
    if event.charge_ref:
        found = await ours(Payment.provider_charge == event.charge_ref)
    if found is None and event.payment_uid:
        try:
            parsed = uuid.UUID(event.payment_uid)
        except ValueError:
            return None
        found = await ours(Payment.uid == parsed)
    return found


async def _advance(payment: Payment, status: str, **values: Any) -> bool:
    """Move the payment to `status` if that is forward from where it is now."""
    lower = [name for name, rank in RANK.items() if rank < RANK[status]]
    columns = {Payment.status: status, Payment.updated_at: now()}
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


async def _locked_case(case_id: int) -> Case | None:
    """The case row, locked against every other writer of it until the transaction ends.

    PostgreSQL: SELECT … FOR NO KEY UPDATE (the lock an UPDATE of the row takes; it does not
    wait for transactions that only insert rows referencing the case). Under READ COMMITTED every
    later statement of the transaction then sees what the previous holder committed. SQLite:
    `db.transaction()` is IMMEDIATE, so writers already run one at a time.
    """
    query = Case.objects().where(Case.id == case_id)
    if db.is_postgres():
        query = query.lock_rows("NO KEY UPDATE")
    return await query.first()


async def _settle(
    payment: Payment,
    event: PaymentEvent,
    *,
    actor: User | None,
    ip: str | None,
    reference: str = "",
) -> _Settled:
    """A payment arrived: check it against what was asked, mark it paid, receive the case.

    Money for a case that no longer takes payments (paid by another attempt, declined,
    cancelled) is recorded as received and moved to refund; the case is never paid twice.
    Runs inside the caller's transaction; the caller runs `follow_up` after the commit."""
    case = await _locked_case(payment.case)  # first: every settle of this case waits here
    if event.amount_minor != payment.amount_minor or event.currency != payment.currency:
        note = f"Received {money(event.amount_minor, event.currency or '???')}"
        if await _ledger(
            payment, "mismatch", note=note, key=f"{payment.uid}:mismatch:{event.event_id}"
        ):
            await _audit(
                "payment.mismatch",
                payment,
                case,
                outcome="failure",
                details={"expected": money(payment.amount_minor, payment.currency), "got": note},
            )
        return _Settled(applied=False)
    values: dict[str, Any] = {"paid_at": now()}
    if event.charge_ref:
        values["provider_charge"] = event.charge_ref
    if event.method:
        values["method"] = event.method
    if reference:
        values["reference"] = reference
    if actor is not None:
        values["recorded_by"] = actor.id
    if case is None or not await _advance(payment, SUCCEEDED, **values):
        return _Settled(applied=False)
    payment.receipt_number = await _next_receipt_number()
    await Payment.update({Payment.receipt_number: payment.receipt_number}).where(
        Payment.id == payment.id
    )
    await _ledger(payment, "charge", note=event.method or payment.method)
    paid_before = await Payment.exists().where(
        (Payment.case == case.id)
        & (Payment.id != payment.id)
        & Payment.status.is_in(list(PAID_STATUSES))
    )
    if paid_before or case.status != states.SUBMITTED:
        why = "paid already" if paid_before else case.status
        await _advance(payment, REFUND_DUE, message=f"Arrived when the case was {why}: refunded.")
        await _timeline(
            payment,
            "payment",
            f"Payment received: {_amount(payment)}. It was not needed, so it will be refunded.",
            actor,
        )
        await _audit(
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
        return _Settled(applied=True, case=case, surplus=True)
    # Before the audit row: its chain lock is always taken last (after case and payment rows).
    closed = await _cancel_open_attempts(case, "Not needed: the fee was paid another way.")
    await _timeline(payment, "payment", f"Payment received: {_amount(payment)}", actor)
    await _audit(
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
        context={"reference": case.reference, "case_url": _case_url(case)},
    )
    await maybe_receive(case)
    return _Settled(applied=True, case=case, closed=closed)


async def _next_receipt_number() -> str:
    year = now().year
    rows = await ReceiptCounter.raw(
        "INSERT INTO payment_receipt_counter (year, last) VALUES ({}, 1) "
        "ON CONFLICT (year) DO UPDATE SET last = payment_receipt_counter.last + 1 "
        "RETURNING last",
        year,
    )
    return f"R-{year}-{rows[0]['last']:05d}"


async def _mark_refunded(payment: Payment, event: PaymentEvent) -> bool:
    if not await _advance(payment, REFUNDED):
        return False
    await _ledger(payment, "refund", note=event.charge_ref)
    await _timeline(payment, "refund", f"Refunded: {_amount(payment)}")
    return True


async def _refund_without_payment_notice(payment: Payment, event: PaymentEvent) -> bool:
    """A refund whose payment notice never came (see OVERTAKING_REFUND_RETRY_SECONDS): the
    attempt ends refunded, so it can no longer make the case paid; staff reconcile it."""
    values = {"provider_charge": event.charge_ref} if event.charge_ref else {}
    if not await _advance(payment, REFUNDED, message="Refunded by the payment service.", **values):
        return False
    await _ledger(payment, "refund", note=event.charge_ref)
    await _timeline(payment, "refund", f"Refunded: {_amount(payment)}")
    await _audit(
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


async def _cancel_open_attempts(case: Case, message: str) -> list[Payment]:
    """Mark the case's open (pending) attempts cancelled; returns them, for `_close_checkouts`
    once the transaction committed. Call with the case row locked (or just changed)."""
    closed = []
    for payment in await payments_of(case):
        if payment.status == PENDING and await _advance(payment, CANCELLED, message=message):
            closed.append(payment)
    return closed


async def _close_checkouts(closed: list[Payment]) -> None:
    """Ask each provider to close the checkout of these cancelled attempts (Stripe: expire the
    session). Best effort: a payment that completes anyway is refunded when it arrives."""
    for payment in closed:
        ref = (payment.provider_ref or "").partition(":")[2]
        if not ref:
            continue  # no checkout was started at the provider
        try:
            await provider(payment.provider).cancel_checkout(ref, f"consilium-expire-{payment.uid}")
        except (ProviderError, PaymentRefused):
            log.warning(
                "could not close the %s checkout of payment %s", payment.provider, payment.uid
            )
        except Exception:  # a plugin's bug must not undo a decline or a cancellation
            log.exception(
                "closing the %s checkout of payment %s failed", payment.provider, payment.uid
            )


async def _timeline(payment: Payment, action: str, note: str, actor: User | None = None) -> None:
    """The patient's timeline entry about this payment, in the caller's transaction (before its
    audit row: the audit chain's lock is always taken last)."""
    await cases.note_event(payment.case, action, note, actor=actor)


def _amount(payment: Payment) -> str:
    return money(payment.amount_minor, payment.currency)


async def _audit(action: str, payment: Payment, case: Case | None, **fields: Any) -> None:
    """One audit row about a payment (and its case)."""
    if case is None:
        case = await Case.objects().where(Case.id == payment.case).first()
    await audit.record(
        action,
        object_type="payment",
        object_id=str(payment.uid),
        case_id=str(case.uid) if case else None,
        **fields,
    )


def _case_url(case: Case) -> str:
    return f"{runtime.settings().base_url}/cases/{case.uid}"


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
    payment = await _open_attempt(case, offline)
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
        settled = await _settle(payment, event, actor=staff, ip=ip, reference=reference)
        if not settled.applied:
            raise PaymentRefused("This payment was recorded already.")
        await _audit(
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


# Received ---------------------------------------------------------------------------------------


async def maybe_receive(case: Case) -> bool:
    """Move a submitted case to `received` when it is paid and its required records are in.

    Joins the caller's transaction (the payment, or the upload that completed the records)."""
    specialty = runtime.plugins().specialty(case.specialty)
    async with db.transaction():
        # Locked: a concurrent payment and last upload each wait for the other's commit, so
        # whichever runs second sees both (READ COMMITTED would let both miss the other's).
        current = await _locked_case(case.id)
        if current is None or current.status != states.SUBMITTED:
            return False
        paid = await Payment.exists().where(
            (Payment.case == case.id) & Payment.status.is_in(list(PAID_STATUSES))
        )
        if not paid or (specialty is not None and await missing_records(current, specialty)):
            return False
        settings = runtime.settings()
        received = now()
        local_day = received.astimezone(ZoneInfo(settings.time_zone)).date()
        due = add_working_days(
            local_day,
            settings.turnaround_working_days,
            country=settings.holiday_country,
            weekend=settings.weekend_days,
        )
        await cases.transition(current, "receive", None, ip=None)
        await Case.update({Case.received_at: received, Case.due_on: due}).where(Case.id == case.id)
        patient = await User.objects().where(User.id == current.patient).first()
        await notifications.enqueue(
            to=patient.email,
            template="case_received",
            context={
                "reference": current.reference,
                "due": due.strftime("%A %-d %B %Y"),
                "case_url": _case_url(current),
            },
        )
    case.status, case.received_at, case.due_on = states.RECEIVED, received, due
    return True


# Declining and refunds ----------------------------------------------------------------------------


async def decline(case: Case, staff: User, reason: str, *, ip: str | None) -> list[Payment]:
    """Decline a case before review and refund what was paid, each through its provider."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput({"reason": "Say why the case is declined; the patient reads this."})
    if len(reason) > 2000:
        raise InvalidInput({"reason": "Use at most 2000 characters."})
    async with db.transaction():
        await cases.transition(case, "decline", staff, ip=ip)  # locks the case row
        await Case.update({Case.decline_reason: reason}).where(Case.id == case.id)
        patient = await User.objects().where(User.id == case.patient).first()
        closed = await _cancel_open_attempts(case, "Not needed: the case was declined.")
        paid = [p for p in await payments_of(case) if p.status in PAID_STATUSES]
        await notifications.enqueue(
            to=patient.email,
            template="case_declined",
            context={
                "reference": case.reference,
                "refund": bool(paid),
                "case_url": _case_url(case),
                "contact_email": runtime.settings().contact_email,
            },
        )
    case.decline_reason = reason
    await _close_checkouts(closed)
    return await refund_all(case, staff, ip=ip)


async def cancel_request(case: Case, patient: User, *, ip: str | None) -> list[Payment]:
    """The patient cancels their request (a draft, or submitted and not yet received): open
    checkouts are closed and what was paid is refunded, as when a case is declined."""
    async with db.transaction():
        await cases.transition(case, "cancel", patient, ip=ip)  # locks the case row
        closed = await _cancel_open_attempts(case, "Not needed: the request was cancelled.")
    await _close_checkouts(closed)
    return await refund_all(case, patient, ip=ip)


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
    return [await _refund(payment, case, actor, ip=ip) for payment in due]


async def cases_with_refunds_due() -> list[Case]:
    """Cases with a payment whose refund failed or is for staff to pay back (staff queue)."""
    rows = await Payment.select(Payment.case).where(Payment.status == REFUND_DUE)
    ids = sorted({row["case"] for row in rows})
    if not ids:
        return []
    return await Case.objects().where(Case.id.is_in(ids)).order_by(Case.submitted_at)


async def _refund(payment: Payment, case: Case, staff: User | None, *, ip: str | None) -> Payment:
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
            if await _refund_due(payment, error.message):
                await _timeline(payment, "refund", _staff_refund_note(payment), staff)
            await _audit(
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
            if await _advance(payment, REFUNDED, message=""):
                await _ledger(payment, "refund", note=result.reference)
                await _timeline(payment, "refund", f"Refunded: {_amount(payment)}", staff)
        elif result.status == "pending":
            if await _advance(payment, REFUND_PENDING, message=""):
                await _ledger(payment, "refund_pending", note=result.reference)
                note = f"Refund of {_amount(payment)} sent. It can take a few days to reach you."
                await _timeline(payment, "refund", note, staff)
        else:
            if await _refund_due(payment, "To be paid back by our staff."):
                await _timeline(payment, "refund", _staff_refund_note(payment), staff)
            await _ledger(payment, "manual_refund")
        await _audit(
            "payment.refund",
            payment,
            case,
            actor=staff,
            ip=ip,
            details={"provider": payment.provider, "result": result.status},
        )
    return payment


async def _refund_due(payment: Payment, message: str) -> bool:
    """Refund due (paid, or due already): staff retry it or pay it back by hand. True when the
    payment was not waiting for staff before."""
    if await _advance(payment, REFUND_DUE, message=message):
        return True
    await Payment.update({Payment.message: message, Payment.updated_at: now()}).where(
        (Payment.id == payment.id) & (Payment.status == REFUND_DUE)
    )
    return False


def _staff_refund_note(payment: Payment) -> str:
    return f"Refund of {_amount(payment)} to be paid back by our staff."


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
        if await _advance(payment, REFUNDED, message=""):
            await _ledger(payment, "refund", note=reference)
            await _timeline(payment, "refund", f"Refunded: {_amount(payment)}", staff)
        await _audit(
            "payment.refund_by_hand",
            payment,
            case,
            actor=staff,
            ip=ip,
            details={"reference": reference},
        )
    return payment

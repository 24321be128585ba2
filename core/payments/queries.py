"""What pages show about a case's payments, and who may see them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from core.accounts.tables import User
from core.cases import reception, states
from core.cases import service as cases
from core.cases.tables import Case
from core.ids import parse_uuid
from core.payment_providers import (
    PaymentProvider,
)
from core.payments.fees import case_fee
from core.payments.gateways import provider_online, providers
from core.payments.ledger import (
    LEDGER_LABELS,
    MONEY_MOVED,
    PAID_STATUSES,
    PENDING,
    REFUND_DUE,
    REFUND_STATUSES,
    STATUS_LABELS,
    payments_of,
)
from core.payments.money import money
from core.payments.tables import (
    CaseFee,
    LedgerEntry,
    Payment,
)
from core.roles import ADMIN, COORDINATOR, PATIENT
from core.specialty import Specialty


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

    @property
    def any_refund_due(self) -> bool:
        return any(self.refund_due(p) for p in self.payments)

    @property
    def refunds(self) -> list[Payment]:
        """Payments that are refunded, on their way back, or to be paid back by staff."""
        return [p for p in self.payments if p.status in REFUND_STATUSES]

    def refund_due(self, payment: Payment) -> bool:
        """Staff still have to pay this one back by hand (or retry the provider's refund)."""
        return payment.status == REFUND_DUE

    @property
    def history(self) -> list[tuple[datetime, str]]:
        """The ledger as people read it: when, and what happened (with its amount)."""
        lines = []
        for entry in self.ledger:
            text = self.ledger_label(entry)
            if entry.kind in MONEY_MOVED:
                text += f" — {money(entry.amount_minor, entry.currency)}"
            elif entry.kind == "failure" and entry.note:
                text += f": {entry.note}"
            lines.append((entry.at, text))
        return lines


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
        missing=reception.missing_records(case, specialty),
        providers=providers(),
    )


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
    parsed = parse_uuid(payment_uid)
    if parsed is None:
        raise cases.CaseNotFound
    payment = await Payment.objects().where(Payment.uid == parsed).first()
    if payment is None:
        raise cases.CaseNotFound
    case = await Case.objects().where(Case.id == payment.case).first()
    if case is None or case.patient != patient.id:
        raise cases.CaseNotFound
    return case, payment

"""Payment receipts as PDF (WeasyPrint), with what an insurer asks for.

The receipt is rendered from a template that contains everything inline; the URL fetcher
serves only `data:` URIs and refuses everything else (http, https, file, ftp…) without failing
the render, so nothing in a name or address can make the renderer read a file or reach the
network. Rendering is blocking (about a tenth of a second): it runs in a thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape

from core import context
from core.accounts.tables import User
from core.audit import service as audit
from core.cases.tables import Case
from core.errors import NotFound
from core.notifications.service import TEMPLATES
from core.payments.service import SUCCEEDED, money
from core.payments.tables import Payment
from core.pdf import html_to_pdf


class ReceiptUnavailable(NotFound):
    """The payment has no receipt (it did not succeed)."""


@dataclass(frozen=True)
class Receipt:
    number: str
    issued: str
    paid_on: str
    hospital_name: str
    hospital_address: str
    contact: str
    patient_name: str
    patient_email: str
    subject_name: str  # who the opinion is for, when not the account holder
    guardian_relationship: str
    case_reference: str
    service: str
    amount: str
    method: str
    provider_reference: str
    refunded: bool


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape())


async def receipt_for(case: Case, payment: Payment, specialty_title: str) -> Receipt:
    if not payment.receipt_number or payment.paid_at is None:  # numbered only once paid
        raise ReceiptUnavailable
    settings = context.settings()
    zone = ZoneInfo(settings.time_zone)
    patient = await User.objects().where(User.id == case.patient).first()
    dependant = case.subject_kind == "dependant"
    reference = payment.reference or (payment.provider_ref or "").partition(":")[2]
    return Receipt(
        number=payment.receipt_number,
        issued=datetime.now(zone).strftime("%-d %B %Y"),
        paid_on=payment.paid_at.astimezone(zone).strftime("%-d %B %Y, %H:%M"),
        hospital_name=settings.hospital_name,
        hospital_address=settings.hospital_address,
        contact=f"{settings.contact_email} · {settings.contact_phone}",
        patient_name=case.subject_name if dependant else patient.full_name,
        patient_email=patient.email,
        subject_name=patient.full_name if dependant else "",
        guardian_relationship=case.subject_relationship.replace("_", " ") if dependant else "",
        case_reference=case.reference,
        service=f"Medical second opinion with written report — {specialty_title}",
        amount=money(payment.amount_minor, payment.currency),
        method=payment.method,
        provider_reference=reference,
        refunded=payment.status != SUCCEEDED,
    )


def render_pdf(receipt: Receipt) -> bytes:
    return html_to_pdf(_environment().get_template("payments/receipt.html").render(receipt=receipt))


async def receipt_pdf(
    case: Case, payment: Payment, specialty_title: str, *, reader: User, ip: str | None
) -> bytes:
    """The receipt as PDF bytes; every copy handed out is audited."""
    receipt = await receipt_for(case, payment, specialty_title)
    pdf = await asyncio.to_thread(render_pdf, receipt)
    await audit.record_about(
        "payment.receipt",
        payment,
        case=case,
        actor=reader,
        ip=ip,
    )
    return pdf

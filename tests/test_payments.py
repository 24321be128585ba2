"""Fees, the sandbox and offline providers, receipts, declines with refunds, and `received`.

Everything goes through HTTP as a patient, coordinator or admin would, on both engines; the
Stripe provider has its own tests against a local Stripe emulator (tests/test_stripe.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import subprocess
import threading
from contextlib import aclosing
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient

from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases.tables import CaseEvent
from core.cases.turnaround import add_working_days
from core.hookspecs import hookimpl
from core.payment_providers import (
    Checkout,
    CheckoutStarted,
    PaymentEvent,
    PaymentProvider,
    WebhookRejected,
)
from core.payments import receipts
from core.payments import service as payments
from core.payments.tables import CaseFee, LedgerEntry, Payment, WebhookEvent
from core.settings import ConfigurationError, load_settings
from tests.conftest import open_client
from tests.payment_support import add_letter, submitted_case, with_checkup
from tests.support import Person, make_person, post_form, read_mail, sign_in


@pytest.fixture
def app(app):
    return with_checkup(app)


async def patient_client(app, country: str = "PK") -> tuple[AsyncClient, Person]:
    client = open_client(app)
    person = await make_person("patient", country=country)
    await sign_in(client, person)
    return client, person


async def staff_client(app, role: str = "coordinator") -> AsyncClient:
    client = open_client(app)
    await sign_in(client, await make_person(role))
    return client


def text_of(html: str) -> str:
    """What a person reads: the words, without tags or runs of spaces."""
    words = " ".join(re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").split())
    return re.sub(r" (?=[.,:;?!)])", "", words)


def part_of(html: str, start: str, end: str = "</section>") -> str:
    """The page from `start` (e.g. 'id="payment"') to the next `end`."""
    return html.split(start, 1)[1].split(end, 1)[0]


def status_box(html: str) -> str:
    return text_of(part_of(html, 'id="case-status"', "</div>"))


async def pay_with_sandbox(client: AsyncClient, case, outcome: str = "succeed") -> str:
    response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
    assert response.status_code == 303, response.text[:2000]
    checkout = response.headers["location"]
    assert checkout.startswith("/payments/sandbox/")
    page = await client.get(checkout)
    assert "no real money moves" in page.text
    response = await post_form(client, checkout, {"outcome": outcome})
    assert response.status_code == 303
    return response.headers["location"]


# The fee ----------------------------------------------------------------------------------------


async def test_the_fee_depends_on_the_country_and_is_fixed_at_submission(running_app) -> None:
    pakistani, _ = await patient_client(running_app, "PK")
    foreign, _ = await patient_client(running_app, "GB")
    async with aclosing(pakistani), aclosing(foreign):
        case_pk = await submitted_case(pakistani)
        case_gb = await submitted_case(foreign)
        assert "PKR 4,500" in (await pakistani.get(f"/cases/{case_pk.uid}")).text
        assert "USD 65.00" in (await foreign.get(f"/cases/{case_gb.uid}")).text
        fee = await CaseFee.objects().where(CaseFee.case == case_pk.id).first()
        assert (fee.currency, fee.amount_minor) == ("PKR", 450_000)

        # An admin raises the fee for Pakistan: only cases submitted from now pay it.
        admin = await staff_client(running_app, "admin")
        async with aclosing(admin):
            rule = next(r for r in await payments.fee_rules() if r.country == "PK")
            response = await post_form(
                admin,
                f"/admin/fees/{rule.uid}",
                {
                    "label": rule.label,
                    "country": "PK",
                    "currency": "PKR",
                    "amount": "5,000",
                    "active": "on",
                },
            )
            assert response.status_code == 303, response.text[:2000]
            listing = await admin.get("/admin/fees")
            assert "PKR 5,000" in listing.text
        changed = await AuditEvent.objects().where(AuditEvent.action == "fee.change").first()
        assert "PKR 4,500" in changed.details and "PKR 5,000" in changed.details
        assert "PKR 4,500" in (await pakistani.get(f"/cases/{case_pk.uid}")).text
        later = await submitted_case(pakistani)
        assert "PKR 5,000" in (await pakistani.get(f"/cases/{later.uid}")).text
        assert "PKR 5,000" in (await pakistani.get("/")).text  # the home page shows the schedule


async def test_the_review_step_shows_the_fee_before_submitting(running_app) -> None:
    client, _ = await patient_client(running_app, "PK")
    async with aclosing(client):
        response = await post_form(client, "/requests/new", {"specialty": "checkup"})
        uid = response.headers["location"].split("/")[2]
        for step, data in [
            (
                "subject",
                {"subject_kind": "self", "subject_birth_date": "1980-01-02", "subject_sex": "male"},
            ),
            ("intake", {"diagnosis": "Gallstones"}),
            ("questions", {"question_1": "Do I need an operation?"}),
            ("doctor", {"preferred_doctor": "none"}),
        ]:
            assert (await post_form(client, f"/requests/{uid}/{step}", data)).status_code == 303
        page = (await client.get(f"/requests/{uid}/review")).text
    text = " ".join(re.sub(r"<[^>]+>", "", page).split())
    assert "Fee: PKR 4,500, payable after you submit." in text


async def test_fee_form_errors_keep_the_entries(running_app) -> None:
    admin = await staff_client(running_app, "admin")
    async with aclosing(admin):
        response = await post_form(
            admin,
            "/admin/fees",
            {"label": "Cardiology, India", "country": "XX", "currency": "INR", "amount": "12.345"},
        )
        assert response.status_code == 400
        assert "two-letter country code" in response.text
        assert "Enter the amount as a number" in response.text
        assert 'value="Cardiology, India"' in response.text
        # The rule for everyone else cannot be switched off (every case needs a fee).
        default = next(r for r in await payments.fee_rules() if not r.country)
        response = await post_form(
            admin,
            f"/admin/fees/{default.uid}",
            {"label": default.label, "currency": "USD", "amount": "65"},
        )
        assert response.status_code == 400
        assert "Keep one active rule" in response.text
    # A specialty rule is more specific than the country-wide one.
    admin_user = (await make_person("admin")).user
    await payments.save_rule(
        {"label": "Radiology abroad", "specialty": "checkup", "currency": "USD", "amount": "80"},
        known_specialties={"checkup"},
        by=admin_user,
        ip=None,
    )
    assert (await payments.quote("GB", "checkup")).display == "USD 80.00"
    assert (await payments.quote("PK", "checkup")).display == "PKR 4,500"
    assert (await payments.quote("GB", "radiology")).display == "USD 65.00"


# The sandbox provider ---------------------------------------------------------------------------


async def test_sandbox_payment_then_records_makes_the_case_received(running_app, settings) -> None:
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        back = await pay_with_sandbox(client, case)
        assert back.startswith(f"/cases/{case.uid}")
        page = (await client.get(back)).text
        assert "Paid" in page and "Download the receipt" in page
        # Paid first: the page says exactly what is still missing, and the case waits.
        assert "To start the review we still need" in page
        assert "The doctor&#39;s letter" in page or "The doctor's letter" in page
        needed = part_of(page, 'id="payment"').split("we still need")[1].split("</ul>")[0]
        assert "Photos" not in needed  # only required
        assert (await cases.get_case(str(case.uid))).status == "submitted"

        await add_letter(running_app, case)
        stored = await cases.get_case(str(case.uid))
        assert stored.status == "received" and stored.received_at is not None
        # Due five working days after the local day it was received (Pakistan's holidays and
        # weekend), the service's turnaround.
        assert settings.turnaround_working_days == 5
        received_day = stored.received_at.astimezone(ZoneInfo(settings.time_zone)).date()
        expected = add_working_days(
            received_day, 5, country=settings.holiday_country, weekend=settings.weekend_days
        )
        assert stored.due_on == expected
        page = (await client.get(f"/cases/{case.uid}")).text
        assert "Received for review" in page
        assert stored.due_on.strftime("%a %-d %b %Y") in page  # "Mon 16 Nov 2026"
    subjects = [m["subject"] for m in await read_mail(settings)]
    assert f"Your request {case.reference} is received for review" in subjects
    assert f"Payment received for your request {case.reference}" in subjects
    assert len(await LedgerEntry.objects().where(LedgerEntry.kind == "charge")) == 1


async def test_records_first_then_payment_receives_at_once(running_app) -> None:
    client, _ = await patient_client(running_app)
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        assert (await cases.get_case(str(case.uid))).status == "submitted"
        assert "Waiting for payment" in (await coordinator.get("/staff/cases?queue=waiting")).text
        await pay_with_sandbox(client, case)
        assert (await cases.get_case(str(case.uid))).status == "received"
        queue = await coordinator.get("/staff/cases?queue=received")
        assert case.reference in queue.text
        assert case.reference in (await coordinator.get("/dashboard")).text


async def test_a_payment_and_the_last_record_at_once_always_receive_the_case(running_app) -> None:
    """The payment's notice and the upload of the last required record, at the same moment, many
    times: whichever commits second sees the other's change, the case is received once, and the
    case-row lock (PostgreSQL) or IMMEDIATE transactions (SQLite) never deadlock or fail.

    Without a lock, READ COMMITTED can let both miss the other's uncommitted write; today the
    audit chain's advisory lock also happens to order these two transactions, so this test
    guards the outcome and the absence of deadlocks rather than the row lock alone."""
    sandbox = payments.provider("sandbox")
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        for batch in range(2):
            notices = []
            waiting = [await submitted_case(client) for _ in range(8)]
            for case in waiting:
                await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
                payment = await Payment.objects().where(Payment.case == case.id).first()
                notices.append(
                    sandbox.notification(
                        provider_ref=payment.provider_ref.partition(":")[2],
                        outcome="succeed",
                        amount_minor=payment.amount_minor,
                        currency=payment.currency,
                        event_id=f"race-{payment.uid}",
                    )
                )
            results = await asyncio.gather(
                *[
                    client.post("/payments/webhooks/sandbox", content=body, headers=headers)
                    for headers, body in notices
                ],
                *[add_letter(running_app, case) for case in waiting],
            )
            assert {r.status_code for r in results[: len(notices)]} == {200}
            for case in waiting:
                stored = await cases.get_case(str(case.uid))
                assert stored.status == "received", (batch, case.reference, stored.status)
                receives = await CaseEvent.count().where(
                    (CaseEvent.case == case.id) & (CaseEvent.action == "receive")
                )
                assert receives == 1


async def test_double_clicks_and_retries_never_charge_twice(running_app) -> None:
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        clicks = await asyncio.gather(
            *[
                post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
                for _ in range(4)
            ]
        )
        assert {r.status_code for r in clicks} == {303}
        assert len({r.headers["location"] for r in clicks}) == 1
        assert await Payment.count().where(Payment.case == case.id) == 1
        checkout = clicks[0].headers["location"]
        await post_form(client, checkout, {"outcome": "succeed"})
        await post_form(client, checkout, {"outcome": "succeed"})  # the back button, resent
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
        assert response.status_code == 409
        assert "paid already" in response.text
    assert await LedgerEntry.count().where(LedgerEntry.kind == "charge") == 1


async def test_a_declined_card_leaves_the_case_payable(running_app) -> None:
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        back = await pay_with_sandbox(client, case, "fail")
        page = (await client.get(back)).text
        assert "did not go through" in page
        assert "The test card was declined." in page  # the history says why
        assert "How would you like to pay" in page  # still payable
        await pay_with_sandbox(client, case, "succeed")
        statuses = sorted(p.status for p in await Payment.objects().where(Payment.case == case.id))
        assert statuses == ["failed", "succeeded"]


async def test_coming_back_from_checkout_marks_nothing_paid(running_app) -> None:
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
        checkout = response.headers["location"]
        page = await client.get(f"/cases/{case.uid}?notice=payment-returned")
        assert "as soon as the payment service confirms" in page.text
        assert "Download the receipt" not in page.text
        response = await post_form(client, checkout, {"outcome": "abandon"})
        assert "payment-abandoned" in response.headers["location"]
        payment = await Payment.objects().where(Payment.case == case.id).first()
        assert payment.status == "pending" and payment.paid_at is None


async def test_forged_or_replayed_sandbox_notifications_are_refused(running_app) -> None:
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
        payment = await Payment.objects().where(Payment.case == case.id).first()
        sandbox = payments.provider("sandbox")
        headers, body = sandbox.notification(
            provider_ref=payment.provider_ref.partition(":")[2],
            outcome="succeed",
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            event_id="evt-forged",
        )
        forged = body.replace(b"succeeded", b"succeeded ")
        response = await client.post("/payments/webhooks/sandbox", content=forged, headers=headers)
        assert response.status_code == 400
        response = await client.post("/payments/webhooks/sandbox", content=body)
        assert response.status_code == 400  # no signature
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == "pending"
        # The genuine notification, delivered twice: applied once.
        for _ in range(2):
            response = await client.post(
                "/payments/webhooks/sandbox", content=body, headers=headers
            )
            assert response.status_code == 200
        assert await WebhookEvent.count() == 1
        assert await LedgerEntry.count().where(LedgerEntry.kind == "charge") == 1


# Receipts ---------------------------------------------------------------------------------------


async def test_receipt_pdf_has_what_an_insurer_asks_for(running_app, settings, tmp_path) -> None:
    client, person = await patient_client(running_app)
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        await pay_with_sandbox(client, case)
        payment = await Payment.objects().where(Payment.case == case.id).first()
        url = f"/cases/{case.uid}/payments/{payment.uid}/receipt"
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert "attachment" in response.headers["content-disposition"]
        assert (await coordinator.get(url)).status_code == 200
        other, _ = await patient_client(running_app)
        async with aclosing(other):
            assert (await other.get(url)).status_code == 404
    pdf = tmp_path / "receipt.pdf"
    pdf.write_bytes(response.content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    for expected in (
        "Consilium Hospital",
        "1 Hospital Road, Lahore, Pakistan",
        "Payment receipt",
        payment.receipt_number,
        person.user.full_name,
        case.reference,
        "Medical second opinion",
        "PKR 4,500",
        "Test card",
        # When it was paid, in the hospital's time zone, and the payment service's reference.
        payment.paid_at.astimezone(ZoneInfo(settings.time_zone)).strftime("%-d %B %Y, %H:%M"),
        f"sbx_{payment.uid}",
    ):
        assert expected in text, expected
    assert payment.receipt_number.startswith("R-")
    reads = await AuditEvent.objects().where(AuditEvent.action == "payment.receipt")
    assert len(reads) == 2  # the patient's and the coordinator's


async def test_receipt_names_the_guardian_for_a_child(running_app, tmp_path) -> None:
    from pypdf import PdfReader

    client, person = await patient_client(running_app)
    async with aclosing(client):
        response = await post_form(client, "/requests/new", {"specialty": "checkup"})
        uid = response.headers["location"].split("/")[2]
        for step, data in [
            (
                "subject",
                {
                    "subject_kind": "dependant",
                    "subject_name": "Little Ayesha",
                    "subject_birth_date": "2019-04-05",
                    "subject_sex": "female",
                    "subject_relationship": "parent",
                    "guardian_declared": "yes",
                },
            ),
            ("intake", {"diagnosis": "Asthma"}),
            ("questions", {"question_1": "Which inhaler?"}),
            ("doctor", {"preferred_doctor": "none"}),
        ]:
            assert (await post_form(client, f"/requests/{uid}/{step}", data)).status_code == 303
        assert (await post_form(client, f"/requests/{uid}/submit")).status_code == 303
        case = await cases.get_case(uid)
        await pay_with_sandbox(client, case)
        payment = await Payment.objects().where(Payment.case == case.id).first()
        response = await client.get(f"/cases/{case.uid}/payments/{payment.uid}/receipt")
    (tmp_path / "r.pdf").write_bytes(response.content)
    text = "".join(page.extract_text() for page in PdfReader(tmp_path / "r.pdf").pages)
    assert "Little Ayesha" in text
    assert person.user.full_name in text and "parent" in text


# A 1×1 PNG: the one kind of reference a receipt may contain is an inline data: URI.
DOT_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5Er"
    "kJggg=="
)


def test_the_receipt_renderer_loads_nothing_but_data_uris() -> None:
    from pypdf import PdfReader

    hits: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("content-type", "text/css")
            self.end_headers()
            self.wfile.write(b"body { color: red }")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    html = f"""<!doctype html><html><head>
<link rel="stylesheet" href="{base}/style.css">
<link rel="attachment" href="file:///etc/passwd" title="passwd">
<style>@import url("{base}/import.css"); body {{ background: url("{base}/bg.png") }}</style>
</head><body>
<p>Receipt R-2026-00001</p>
<img src="{base}/logo.png" alt="">
<img src="file:///etc/passwd" alt="">
<object data="file:///etc/passwd" type="text/plain"></object>
<a rel="attachment" href="file:///etc/passwd">the file</a>
<img src="data:image/png;base64,{DOT_PNG}" alt="dot" width="10" height="10">
</body></html>"""
    try:
        pdf = receipts.html_to_pdf(html)  # refused references are left out, never an error
    finally:
        server.shutdown()
        server.server_close()  # else its socket is reported unclosed in a later test
    assert hits == []  # nothing reached the network
    reader = PdfReader(BytesIO(pdf))
    text = "".join(page.extract_text() for page in reader.pages)
    assert "Receipt R-2026-00001" in text
    assert "root:" not in text and b"/EmbeddedFile" not in pdf  # no local file read
    assert not reader.attachments
    assert len(reader.pages[0].images) == 1  # the data: image is there


# Offline payment --------------------------------------------------------------------------------


async def test_offline_payment_recorded_by_a_coordinator(running_app) -> None:
    client, _ = await patient_client(running_app)
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "offline"})
        assert response.status_code == 303
        page = (await client.get(response.headers["location"])).text
        assert "bank transfer" in page and case.reference in page
        assert (await cases.get_case(str(case.uid))).status == "submitted"

        url = f"/staff/cases/{case.uid}/payments"
        wrong = {
            "amount": "4000",
            "currency": "PKR",
            "method": "Bank transfer",
            "reference": "TRX-1",
        }
        response = await post_form(coordinator, url, wrong)
        assert response.status_code == 400
        assert "The fee for this case is PKR 4,500" in response.text
        assert 'value="TRX-1"' in response.text  # the entries are kept
        right = {**wrong, "amount": "4,500"}
        response = await post_form(coordinator, url, right)
        assert response.status_code == 303, response.text[:2000]
        assert (await cases.get_case(str(case.uid))).status == "received"
        again = await post_form(coordinator, url, right)
        assert again.status_code == 409  # paid: nothing more to record
    payment = await Payment.objects().where(Payment.status == "succeeded").first()
    assert (payment.method, payment.reference) == ("Bank transfer", "TRX-1")
    recorded = await AuditEvent.objects().where(AuditEvent.action == "payment.record_offline")
    assert len(recorded) == 1 and "TRX-1" in recorded[0].details


# Declining and refunds --------------------------------------------------------------------------


async def test_declining_refunds_through_the_provider_and_tells_the_patient(
    running_app, settings
) -> None:
    client, _ = await patient_client(running_app)
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        await pay_with_sandbox(client, case)
        url = f"/staff/cases/{case.uid}/decline"
        response = await post_form(coordinator, url, {"reason": "  "})
        assert response.status_code == 400 and "Say why the case is declined" in response.text
        reason = "We do not review this kind of case; please see a surgeon locally."
        response = await post_form(coordinator, url, {"reason": reason})
        assert response.status_code == 303
        page = (await client.get(f"/cases/{case.uid}")).text
        assert "Declined" in page and "please see a surgeon locally" in page
        assert "Refunded" in page
    payment = await Payment.objects().where(Payment.case == case.id).first()
    assert payment.status == "refunded"
    kinds = [e.kind for e in await LedgerEntry.objects().order_by(LedgerEntry.id)]
    assert kinds == ["charge", "refund"]
    declined = [m for m in await read_mail(settings) if "could not take" in m["subject"]]
    assert len(declined) == 1
    body = declined[0].get_content()
    assert "being refunded" in body and "surgeon" not in body  # no medical details by email


async def test_offline_refunds_are_paid_back_by_hand(running_app) -> None:
    client, _ = await patient_client(running_app)
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        await post_form(
            coordinator,
            f"/staff/cases/{case.uid}/payments",
            {"amount": "4500", "currency": "PKR", "method": "Cash desk", "reference": "TILL-9"},
        )
        await post_form(coordinator, f"/staff/cases/{case.uid}/decline", {"reason": "Duplicate"})
        payment = await Payment.objects().where(Payment.case == case.id).first()
        assert payment.status == "refund_due"
        page = (await coordinator.get(f"/staff/cases/{case.uid}")).text
        assert "Refund to be paid by our staff" in page
        url = f"/staff/cases/{case.uid}/payments/{payment.uid}/refunded"
        assert (await post_form(coordinator, url, {"refund_reference": ""})).status_code == 400
        response = await post_form(coordinator, url, {"refund_reference": "CASH-BACK-1"})
        assert response.status_code == 303
    payment = await Payment.objects().where(Payment.id == payment.id).first()
    assert payment.status == "refunded"
    kinds = [e.kind for e in await LedgerEntry.objects().order_by(LedgerEntry.id)]
    assert kinds == ["charge", "manual_refund", "refund"]


async def test_patients_cannot_record_payments_or_decline(running_app) -> None:
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        response = await post_form(
            client,
            f"/staff/cases/{case.uid}/payments",
            {"amount": "4500", "currency": "PKR", "method": "x", "reference": "y"},
        )
        assert response.status_code == 403
        assert await Payment.count() == 0


async def test_cancelling_a_paid_case_asks_first_then_refunds_it(running_app) -> None:
    client, person = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        unpaid = (await client.get(f"/cases/{case.uid}")).text
        assert "Cancel this request" in unpaid and "get a refund" not in unpaid
        await pay_with_sandbox(client, case)  # paid; the letter is still missing
        page = (await client.get(f"/cases/{case.uid}")).text
        # Said before the patient confirms: cancelling gives the money back.
        assert "Cancel and get a refund of PKR 4,500" in text_of(page)
        # The button only leads to the question (a link: no JavaScript needed), never cancels.
        confirm_url = f"/requests/{case.uid}/cancel"
        assert f'href="{confirm_url}"' in page
        assert f'action="{confirm_url}"' not in page
        asked = await client.get(confirm_url)
        assert asked.status_code == 200
        question = text_of(asked.text)
        assert f"Cancel request {case.reference}?" in question
        assert "We refund the whole fee you paid, PKR 4,500." in question
        assert "No, keep my request" in question
        assert 'name="confirm" value="yes"' in asked.text
        # A post without the confirmation (an old page, a stray click) is sent to the question.
        response = await post_form(client, confirm_url)
        assert response.status_code == 303 and response.headers["location"] == confirm_url
        assert (await cases.get_case(str(case.uid))).status == "submitted"
        assert await Payment.count().where(Payment.status == "succeeded") == 1
        response = await post_form(client, confirm_url, {"confirm": "yes"})
        assert response.status_code == 303
        assert "request-cancelled" in response.headers["location"]
        assert (await cases.get_case(str(case.uid))).status == "cancelled"
        page = (await client.get(f"/cases/{case.uid}")).text
        assert "Refunded" in page and "Cancel" not in page.split('id="payment"')[1]
    payment = await Payment.objects().where(Payment.case == case.id).first()
    assert payment.status == "refunded"
    kinds = [e.kind for e in await LedgerEntry.objects().order_by(LedgerEntry.id)]
    assert kinds == ["charge", "refund"]
    refund = await AuditEvent.objects().where(AuditEvent.action == "payment.refund").first()
    assert refund.outcome == "success" and refund.actor_uid == str(person.user.uid)


async def test_a_draft_is_cancelled_from_the_same_question(running_app) -> None:
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        response = await post_form(client, "/requests/new", {"specialty": "checkup"})
        uid = response.headers["location"].split("/")[2]
        asked = await client.get(f"/requests/{uid}/cancel")
        assert asked.status_code == 200 and "Yes, cancel this request" in asked.text
        assert "refund" not in asked.text.lower()
        done = await post_form(client, f"/requests/{uid}/cancel", {"confirm": "yes"})
        assert done.headers["location"] == "/dashboard?notice=request-cancelled"
        # Cancelled: nothing left to ask.
        again = await client.get(f"/requests/{uid}/cancel")
        assert again.headers["location"] == f"/cases/{uid}?notice=cannot-cancel"


# What the case page says ------------------------------------------------------------------------


async def test_the_status_says_what_is_still_missing(running_app) -> None:
    """Issue 10, item 1: paid but no records is not "upload your records and pay the fee"."""
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        status = status_box((await client.get(f"/cases/{case.uid}")).text)
        assert "The doctor's letter" in status and "PKR 4,500" in status
        assert "Photos" not in status  # recommended, not required

        await pay_with_sandbox(client, case)
        page = (await client.get(f"/cases/{case.uid}")).text
        status = status_box(page)
        assert "We have your payment" in status
        assert "we still need your records: The doctor's letter" in status
        assert "pay" not in status.replace("payment", "").lower()
        assert 'href="#records">Upload your records</a>' in part_of(page, 'id="case-status"')

        other = await submitted_case(client)
        await add_letter(running_app, other)
        page = (await client.get(f"/cases/{other.uid}")).text
        status = status_box(page)
        assert "We have your records. To start, please pay the fee of PKR 4,500." in status
        assert "letter" not in status
        assert 'href="#payment">Pay PKR 4,500</a>' in part_of(page, 'id="case-status"')


async def test_payment_notices_show_in_the_payment_section(running_app, monkeypatch) -> None:
    """Issue 10, item 2: back from a declined or abandoned checkout at #payment, the notice is
    there (at the top of the payment section), not at the top of the page, out of view."""
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        for outcome, words in (
            ("fail", "The payment did not go through"),
            ("abandon", "The payment was not completed"),
        ):
            back = await pay_with_sandbox(client, case, outcome)
            assert back.endswith("#payment"), back
            page = (await client.get(back)).text
            before_payment, payment = page.split('id="payment"', 1)
            assert words not in before_payment, outcome
            heading_then_notice = payment.split("</h2>", 1)[1].split("<form", 1)[0]
            assert words in heading_then_notice, outcome
        # A provider's own way back (Stripe's success and cancel URLs) lands there too.
        from core.payments.builtin import SandboxProvider

        asked: list[Checkout] = []
        original = SandboxProvider.start_checkout

        async def spy(self, checkout: Checkout) -> CheckoutStarted:
            asked.append(checkout)
            return await original(self, checkout)

        monkeypatch.setattr(SandboxProvider, "start_checkout", spy)
        other = await submitted_case(client)
        await post_form(client, f"/cases/{other.uid}/payments/", {"provider": "sandbox"})
        [checkout] = asked
        assert checkout.success_url.endswith("?notice=payment-returned#payment")
        assert checkout.cancel_url.endswith("?notice=payment-abandoned#payment")
        page = (await client.get(f"/cases/{case.uid}?notice=payment-returned")).text
        assert "as soon as the payment service confirms" in part_of(page, 'id="payment"')
        assert "as soon as the payment service confirms" not in page.split('id="payment"')[0]


async def test_the_timeline_lists_payments_uploads_and_refunds(running_app) -> None:
    """Issue 10, item 5: what happened to the money and the records is on the timeline, in plain
    words, written in the same transaction as the change."""
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        await pay_with_sandbox(client, case, "fail")
        await pay_with_sandbox(client, case, "expire")
        await pay_with_sandbox(client, case, "succeed")
        await add_letter(running_app, case, checklist_item="photos")
        await add_letter(running_app, case, checklist_item="photos", text="another")
        timeline = text_of(
            part_of((await client.get(f"/cases/{case.uid}")).text, "What has happened")
        )
        for line in (
            "Request submitted",
            "Payment failed. Nothing was charged.",
            "Payment not completed. Nothing was charged.",
            "Payment received: PKR 4,500",
            "Records added: 2 files",  # two uploads in a row are one line
        ):
            assert line in timeline, (line, timeline)
        assert timeline.index("Payment failed") < timeline.index("Payment received")
        assert "letter.pdf" not in timeline  # no file names: they can say what the illness is

        response = await post_form(client, f"/requests/{case.uid}/cancel", {"confirm": "yes"})
        assert response.status_code == 303
        timeline = text_of(
            part_of((await client.get(f"/cases/{case.uid}")).text, "What has happened")
        )
        assert "Request cancelled" in timeline and "Refunded: PKR 4,500" in timeline
    actions = [e.action for e in await CaseEvent.objects().where(CaseEvent.case == case.id)]
    assert actions.count("records_added") == 2
    assert actions.count("payment") == 1 and actions.count("refund") == 1


async def test_refunds_to_pay_by_hand_are_on_the_timeline(running_app) -> None:
    client, _ = await patient_client(running_app)
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        paid = {"amount": "4,500", "currency": "PKR", "method": "Cash desk", "reference": "C-1"}
        response = await post_form(coordinator, f"/staff/cases/{case.uid}/payments", paid)
        assert response.status_code == 303
        reason = {"reason": "We cannot review this kind of case."}
        assert (
            await post_form(coordinator, f"/staff/cases/{case.uid}/decline", reason)
        ).status_code == 303
        payment = await Payment.objects().where(Payment.case == case.id).first()
        url = f"/staff/cases/{case.uid}/payments/{payment.uid}/refunded"
        response = await post_form(coordinator, url, {"refund_reference": "CASH-BACK-1"})
        assert response.status_code == 303
        timeline = text_of(
            part_of((await client.get(f"/cases/{case.uid}")).text, "What has happened")
        )
    assert "Payment received: PKR 4,500" in timeline
    assert "Refund of PKR 4,500 to be paid back by our staff." in timeline
    assert timeline.index("to be paid back") < timeline.index("Refunded: PKR 4,500")


async def test_each_page_and_specialty_has_one_name(running_app) -> None:
    """Issue 10, item 9: the menu says what the page's heading says ("My work" led to "My
    queue"), and a specialty has the one name its plugin gives it ("Checkup" in the queue,
    "Check-up second opinion" elsewhere)."""
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        await pay_with_sandbox(client, case)
    assert (await cases.get_case(str(case.uid))).status == "received"

    def menu_and_heading(html: str, path: str) -> tuple[str, str]:
        menu = re.search(rf'<a href="{re.escape(path)}">([^<]+)</a>', html)
        heading = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
        assert menu and heading
        return menu.group(1).strip(), text_of(heading.group(1))

    for role in ("patient", "doctor", "coordinator", "admin"):
        person = await patient_client(running_app) if role == "patient" else None
        browser = person[0] if person else await staff_client(running_app, role)
        async with aclosing(browser):
            label, heading = menu_and_heading((await browser.get("/dashboard")).text, "/dashboard")
            assert label == heading, role
            if role in ("coordinator", "admin"):
                queue = (await browser.get("/staff/cases")).text
                assert menu_and_heading(queue, "/staff/cases") == ("Cases", "Cases")
                assert "Check-up second opinion" in queue and "Checkup" not in queue
            if role == "coordinator":
                dashboard = (await browser.get("/dashboard")).text
                assert "Check-up second opinion" in dashboard


# The turnaround clock ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "weekend", "due"),
    [
        (date(2026, 12, 3), 1, [5, 6], date(2026, 12, 4)),  # Thursday → Friday
        (date(2026, 12, 4), 1, [5, 6], date(2026, 12, 7)),  # Friday → over the weekend
        (date(2026, 12, 5), 5, [5, 6], date(2026, 12, 11)),  # received on a Saturday
        (date(2026, 8, 13), 5, [5, 6], date(2026, 8, 21)),  # 14 August: Independence Day
        (date(2026, 12, 24), 1, [5, 6], date(2026, 12, 28)),  # 25 December: Quaid-e-Azam Day
        (date(2026, 12, 3), 1, [4, 5], date(2026, 12, 6)),  # a Friday–Saturday weekend
    ],
)
def test_due_dates_skip_weekends_and_public_holidays(start, days, weekend, due) -> None:
    assert add_working_days(start, days, country="PK", weekend=weekend) == due


def test_production_refuses_the_test_checkout(tmp_path) -> None:
    production = {
        "env": "production",
        "secret_key": "s" * 40,
        "base_url": "https://second-opinion.example",
        "var_dir": tmp_path,
        "report_signing_key": tmp_path / "report-key.pem",
        "report_signing_cert": tmp_path / "report-cert.pem",
    }
    with pytest.raises(ConfigurationError, match="sandbox"):
        load_settings(_env_file=None, **production)
    load_settings(_env_file=None, payment_providers=["offline"], **production)


# A provider from a plugin --------------------------------------------------------------------


class CashPoint(PaymentProvider):
    """A made-up regional gateway: its notifications carry a MAC over the raw body."""

    name, label, method = "cashpoint", "Pay at a CashPoint shop", "CashPoint voucher"
    description = "Pay with a voucher code at any CashPoint shop."
    secret = b"cashpoint-test-secret"

    def __init__(self) -> None:
        self.checkouts: list[Checkout] = []

    async def start_checkout(self, checkout: Checkout) -> CheckoutStarted:
        self.checkouts.append(checkout)
        return CheckoutStarted(provider_ref=f"cp-{checkout.idempotency_key}", redirect_url=None)

    def parse_webhook(self, headers, body: bytes, now: float) -> list[PaymentEvent]:
        expected = hmac.new(self.secret, body, "sha256").hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-cashpoint-mac", "")):
            raise WebhookRejected("bad mac")
        data = json.loads(body)
        return [
            PaymentEvent(
                event_id=data["id"],
                kind="succeeded",
                provider_ref=data["ref"],
                amount_minor=data["amount"],
                currency=data["currency"],
            )
        ]


class CashPointPlugin:
    def __init__(self) -> None:
        self.provider = CashPoint()

    @hookimpl
    def consilium_payment_providers(self, settings) -> list[PaymentProvider]:
        return [self.provider]


async def test_hook_consilium_payment_providers(running_app, settings) -> None:
    plugin = CashPointPlugin()
    running_app.state.plugins.manager.register(plugin, name="cashpoint-test")
    settings.payment_providers.insert(0, "cashpoint")  # listed: offered first
    assert "cashpoint" in running_app.state.plugins.payment_providers(settings)
    client, _ = await patient_client(running_app)
    async with aclosing(client):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        page = (await client.get(f"/cases/{case.uid}")).text
        assert page.index("Pay at a CashPoint shop") < page.index("Pay online (test)")
        response = await post_form(
            client, f"/cases/{case.uid}/payments/", {"provider": "cashpoint"}
        )
        assert response.status_code == 303
        [checkout] = plugin.provider.checkouts
        assert (checkout.amount_minor, checkout.currency) == (450_000, "PKR")
        body = json.dumps(
            {
                "id": "cp-evt-1",
                "ref": f"cp-{checkout.idempotency_key}",
                "amount": 450_000,
                "currency": "PKR",
            }
        ).encode()
        mac = hmac.new(CashPoint.secret, body, "sha256").hexdigest()
        bad = await client.post(
            "/payments/webhooks/cashpoint", content=body, headers={"x-cashpoint-mac": "0" * 64}
        )
        assert bad.status_code == 400
        assert (await cases.get_case(str(case.uid))).status == "submitted"
        good = await client.post(
            "/payments/webhooks/cashpoint", content=body, headers={"x-cashpoint-mac": mac}
        )
        assert good.status_code == 200
        assert (await cases.get_case(str(case.uid))).status == "received"

"""Stripe Checkout against a local server speaking Stripe's wire format (tests/stripe_emulator.py),
with webhooks signed exactly as Stripe signs them. Both engines; the concurrency test matters
most on PostgreSQL, where the deliveries are real concurrent transactions."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

from core import db
from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.payments.tables import LedgerEntry, Payment, WebhookEvent
from tests import stripe_emulator
from tests.conftest import make_settings
from tests.payment_support import add_letter, submitted_case, with_checkup
from tests.support import post_form
from tests.test_payments import patient_client, staff_client


@pytest.fixture(scope="module")
def emulator():
    emulator, server = stripe_emulator.start()
    yield emulator
    server.shutdown()


@pytest.fixture
def settings(tmp_path, database_url, emulator):
    result = make_settings(
        tmp_path,
        database_url,
        payment_providers=["stripe", "offline"],
        stripe_secret_key=stripe_emulator.SECRET_KEY,
        stripe_webhook_secret=stripe_emulator.WEBHOOK_SECRET,
        stripe_api_base=emulator.url,
    )
    db.configure_database(result)
    return result


@pytest.fixture
def app(app):
    return with_checkup(app)


async def checkout(client, case) -> tuple[str, Payment]:
    response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "stripe"})
    assert response.status_code == 303, response.text[:2000]
    payment = await Payment.objects().where(Payment.case == case.id).first()
    return payment.provider_ref.partition(":")[2], payment


async def deliver(client, body: bytes, signature: str | None = None):
    headers = {"stripe-signature": signature or stripe_emulator.signature(body)}
    return await client.post("/payments/webhooks/stripe", content=body, headers=headers)


async def test_checkout_then_verified_webhook_receives_the_case(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        clicks = [
            await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "stripe"})
            for _ in range(2)
        ]
        locations = {r.headers["location"] for r in clicks}
        assert len(locations) == 1
        assert locations.pop().startswith("https://checkout.stripe.com/c/pay/cs_test_")
        calls = [
            r
            for r in emulator.requests
            if r[0] == "/v1/checkout/sessions"
            and r[2]["metadata[case_reference]"] == case.reference
            and str(case.uid) in r[1]["idempotency-key"]
        ]
        assert len(calls) == 1  # the second click reused the open checkout
        _, headers, form = calls[-1]
        assert headers["idempotency-key"].startswith(f"consilium-{case.uid}-")
        assert form["line_items[0][price_data][unit_amount]"] == "6500"
        assert form["line_items[0][price_data][currency]"] == "usd"
        session_id, payment = await checkout(client, case)
        # Coming back from Stripe proves nothing.
        await client.get(f"/cases/{case.uid}?notice=payment-returned")
        assert (await cases.get_case(str(case.uid))).status == "submitted"

        response = await deliver(client, emulator.event("checkout.session.completed", session_id))
        assert response.status_code == 200
        stored = await cases.get_case(str(case.uid))
        assert stored.status == "received" and stored.due_on is not None
    payment = await Payment.objects().where(Payment.id == payment.id).first()
    assert payment.status == "succeeded" and payment.provider_charge.startswith("pi_")
    assert await LedgerEntry.count().where(LedgerEntry.kind == "charge") == 1


async def test_unverifiable_webhooks_change_nothing(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        session_id, payment = await checkout(client, case)
        body = emulator.event("checkout.session.completed", session_id)
        wrong_secret = stripe_emulator.signature(body, secret="whsec_someone_else")
        assert (await deliver(client, body, wrong_secret)).status_code == 400
        altered = body.replace(b'"amount_total": 6500', b'"amount_total": 6501')
        assert (await deliver(client, altered, stripe_emulator.signature(body))).status_code == 400
        old = stripe_emulator.signature(body, at=int(time.time()) - 301)
        assert (await deliver(client, body, old)).status_code == 400
        response = await client.post("/payments/webhooks/stripe", content=body)
        assert response.status_code == 400  # no signature header
        assert await WebhookEvent.count() == 0
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == "pending"
        assert (await deliver(client, body)).status_code == 200  # the genuine one still works


async def test_concurrent_duplicate_deliveries_make_one_ledger_row(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        session_id, _ = await checkout(client, case)
        body = emulator.event("checkout.session.completed", session_id)
        signature = stripe_emulator.signature(body)
        responses = await asyncio.gather(*[deliver(client, body, signature) for _ in range(8)])
        assert {r.status_code for r in responses} == {200}
        assert (await deliver(client, body, signature)).status_code == 200  # a later retry
    assert await LedgerEntry.count().where(LedgerEntry.kind == "charge") == 1
    assert await WebhookEvent.count() == 1
    assert await Payment.count().where(Payment.status == "succeeded") == 1


async def test_events_out_of_order_end_in_the_right_state(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        first = await submitted_case(client)
        session_id, payment = await checkout(client, first)
        await deliver(client, emulator.event("checkout.session.completed", session_id))
        await deliver(client, emulator.event("checkout.session.expired", session_id))
        await deliver(client, emulator.event("checkout.session.async_payment_failed", session_id))
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == (
            "succeeded"
        )
        # A refund notice that overtakes the payment: refunded, and the case is never received.
        second = await submitted_case(client)
        await add_letter(running_app, second)
        session_id, payment = await checkout(client, second)
        refunded = emulator.event("charge.refunded", session_id)
        early = await deliver(client, refunded)
        assert early.status_code == 503  # not applied, not remembered: Stripe delivers it again
        await deliver(client, emulator.event("checkout.session.completed", session_id))
        assert (await deliver(client, refunded)).status_code == 200  # Stripe's retry
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == (
            "refunded"
        )
        kinds = [
            e.kind for e in await LedgerEntry.objects().where(LedgerEntry.payment == payment.id)
        ]
        assert sorted(kinds) == ["charge", "refund"]


async def test_amount_or_currency_mismatch_is_not_paid(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        session_id, payment = await checkout(client, case)
        cheap = emulator.event("checkout.session.completed", session_id, amount_total=100)
        assert (await deliver(client, cheap)).status_code == 200
        other = emulator.event("checkout.session.completed", session_id, currency="pkr")
        assert (await deliver(client, other)).status_code == 200
    assert (await Payment.objects().where(Payment.id == payment.id).first()).status == "pending"
    assert await LedgerEntry.count().where(LedgerEntry.kind == "mismatch") == 2
    assert await LedgerEntry.count().where(LedgerEntry.kind == "charge") == 0
    assert await AuditEvent.count().where(AuditEvent.action == "payment.mismatch") == 2


async def test_a_provider_error_leaves_the_case_payable(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        emulator.fail_next = 1
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "stripe"})
        assert response.status_code == 409
        assert "did not answer. Nothing was charged" in response.text
        assert "Pay by card" in response.text  # still payable, on the same page
        failed = await Payment.objects().where(Payment.case == case.id).first()
        assert failed.status == "failed"
        assert await LedgerEntry.count().where(LedgerEntry.kind == "failure") == 1
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "stripe"})
        assert response.status_code == 303
        assert response.headers["location"].startswith("https://checkout.stripe.com/")


async def test_declining_refunds_through_stripe(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        session_id, payment = await checkout(client, case)
        await deliver(client, emulator.event("checkout.session.completed", session_id))
        response = await post_form(
            coordinator, f"/staff/cases/{case.uid}/decline", {"reason": "Outside our scope."}
        )
        assert response.status_code == 303
        refunds = [
            r
            for r in emulator.requests
            if r[0] == "/v1/refunds" and r[2]["metadata[payment]"] == str(payment.uid)
        ]
        assert len(refunds) == 1
        _, headers, form = refunds[0]
        assert form["payment_intent"] == "pi_" + session_id[-16:]
        assert headers["idempotency-key"] == f"consilium-refund-{payment.uid}"
        # Stripe's own notice of the refund arrives later: nothing more happens.
        await deliver(client, emulator.event("charge.refunded", session_id))
    assert (await Payment.objects().where(Payment.id == payment.id).first()).status == "refunded"
    kinds = [e.kind for e in await LedgerEntry.objects().order_by(LedgerEntry.id)]
    assert kinds == ["charge", "refund"]

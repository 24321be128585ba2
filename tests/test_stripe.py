"""Stripe Checkout against a local server speaking Stripe's wire format (tests/stripe_emulator.py),
with webhooks signed exactly as Stripe signs them. Both engines; the concurrency test matters
most on PostgreSQL, where the deliveries are real concurrent transactions."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases.tables import CaseEvent
from core.payments import service as payments
from core.payments.tables import LedgerEntry, Payment, WebhookEvent
from tests import stripe_emulator
from tests.conftest import make_settings, use_settings
from tests.payment_support import add_letter, submitted_case, with_checkup
from tests.support import post_form, read_mail
from tests.test_payments import patient_client, staff_client


@pytest.fixture(scope="module")
def emulator():
    emulator, server = stripe_emulator.start()
    yield emulator
    server.shutdown()
    server.server_close()  # else its socket is reported unclosed in whichever test runs then


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
    with use_settings(result):
        yield result


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


async def test_a_redelivered_event_changes_nothing_the_patient_sees(
    running_app, settings, emulator
) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        session_id, payment = await checkout(client, case)
        body = emulator.event("checkout.session.completed", session_id)
        assert (await deliver(client, body)).status_code == 200
        page = (await client.get(f"/cases/{case.uid}")).text
        paid = await Payment.objects().where(Payment.id == payment.id).first()
        assert "Paid" in page and paid.receipt_number
        assert (await deliver(client, body)).status_code == 200  # Stripe's retry, or a replay
        assert (await client.get(f"/cases/{case.uid}")).text == page
    again = await Payment.objects().where(Payment.id == payment.id).first()
    assert (again.status, again.receipt_number, again.paid_at) == (
        paid.status,
        paid.receipt_number,
        paid.paid_at,
    )
    subjects = [m["Subject"] for m in await read_mail(settings)]
    assert subjects.count(f"Payment received for your request {case.reference}") == 1


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


def stripe_calls(emulator, path: str, **form: str) -> list[tuple[str, dict, dict]]:
    """The emulator's requests to `path` whose form has these values."""
    return [
        r
        for r in emulator.requests
        if r[0] == path and all(r[2].get(k) == v for k, v in form.items())
    ]


async def test_two_clicks_at_once_reuse_one_stripe_session(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        emulator.delay = 0.3  # Stripe is slow: the second click arrives while the first runs
        try:
            clicks = await asyncio.gather(
                *[
                    post_form(client, f"/cases/{case.uid}/payments/", {"provider": "stripe"})
                    for _ in range(2)
                ]
            )
        finally:
            emulator.delay = 0.0
        assert [r.status_code for r in clicks] == [303, 303], clicks[-1].text[:1000]
        assert len({r.headers["location"] for r in clicks}) == 1
    [payment] = await Payment.objects().where(Payment.case == case.id)
    calls = stripe_calls(emulator, "/v1/checkout/sessions", client_reference_id=str(payment.uid))
    assert len(calls) >= 2  # a real retry reached Stripe…
    assert {c[1]["idempotency-key"] for c in calls} == {f"consilium-{case.uid}-1"}  # …same key
    sessions = [
        s for s in emulator.sessions.values() if s["client_reference_id"] == str(payment.uid)
    ]
    assert len(sessions) == 1  # …and one checkout session
    assert payment.status == "pending" and payment.provider_ref == f"stripe:{sessions[0]['id']}"


async def test_a_second_provider_paid_after_the_first_is_refunded(
    running_app, settings, emulator
) -> None:
    settings.payment_providers.append("sandbox")  # two tabs: Stripe's page and the test checkout
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        await add_letter(running_app, case)
        session_id, by_card = await checkout(client, case)
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
        await post_form(client, response.headers["location"], {"outcome": "succeed"})
        received = await cases.get_case(str(case.uid))
        assert received.status == "received"
        # The card checkout still open in the other tab is closed at Stripe…
        [expire] = stripe_calls(emulator, f"/v1/checkout/sessions/{session_id}/expire")
        assert expire[1]["idempotency-key"] == f"consilium-expire-{by_card.uid}"
        assert emulator.sessions[session_id]["status"] == "expired"
        # …but the patient had paid there a moment before: Stripe's notice still arrives.
        response = await deliver(client, emulator.event("checkout.session.completed", session_id))
        assert response.status_code == 200
        [refund] = stripe_calls(emulator, "/v1/refunds", **{"metadata[payment]": str(by_card.uid)})
        assert refund[2]["payment_intent"] == "pi_" + session_id[-16:]
        assert refund[1]["idempotency-key"] == f"consilium-refund-{by_card.uid}"
        page = (await client.get(f"/cases/{case.uid}")).text
        assert "A second payment of USD 65.00" in page and "Refunded" in page
    by_card = await Payment.objects().where(Payment.id == by_card.id).first()
    assert by_card.status == "refunded"
    statuses = sorted(p.status for p in await Payment.objects().where(Payment.case == case.id))
    assert statuses == ["refunded", "succeeded"]  # paid once
    after = await cases.get_case(str(case.uid))
    assert (after.status, after.due_on, after.received_at) == (
        "received",
        received.due_on,
        received.received_at,
    )
    assert (
        await CaseEvent.count().where((CaseEvent.case == case.id) & (CaseEvent.action == "receive"))
        == 1
    )
    assert await AuditEvent.count().where(AuditEvent.action == "payment.succeeded") == 1
    assert await AuditEvent.count().where(AuditEvent.action == "payment.surplus") == 1
    kinds = [
        e.kind
        for e in await LedgerEntry.objects()
        .where(LedgerEntry.payment == by_card.id)
        .order_by(LedgerEntry.id)
    ]
    assert kinds == ["charge", "refund"]
    subjects = [m["subject"] for m in await read_mail(settings)]
    assert subjects.count(f"Payment received for your request {case.reference}") == 1


async def test_two_payments_at_the_same_moment_pay_the_case_once(
    running_app, settings, emulator
) -> None:
    """The test checkout's notice and Stripe's, delivered at once: the case row lock makes the
    second wait and see the first (without it, both saw no other payment and both counted)."""
    settings.payment_providers.append("sandbox")
    sandbox = payments.provider("sandbox")
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        for _ in range(4):
            case = await submitted_case(client)
            session_id, _ = await checkout(client, case)
            await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
            test_payment = (
                await Payment.objects()
                .where((Payment.case == case.id) & (Payment.provider == "sandbox"))
                .first()
            )
            headers, body = sandbox.notification(
                provider_ref=test_payment.provider_ref.partition(":")[2],
                outcome="succeed",
                amount_minor=test_payment.amount_minor,
                currency=test_payment.currency,
                event_id=f"at-once-{test_payment.uid}",
            )
            card = emulator.event("checkout.session.completed", session_id)
            responses = await asyncio.gather(
                client.post("/payments/webhooks/sandbox", content=body, headers=headers),
                deliver(client, card),
            )
            assert [r.status_code for r in responses] == [200, 200]
            attempts = await Payment.objects().where(Payment.case == case.id)
            statuses = sorted(p.status for p in attempts)
            assert statuses == ["refunded", "succeeded"], (case.reference, statuses)
            assert (
                await AuditEvent.count().where(
                    (AuditEvent.action == "payment.succeeded")
                    & (AuditEvent.case_id == str(case.uid))
                )
                == 1
            )


@pytest.mark.parametrize("closing", ["decline", "cancel"])
async def test_a_checkout_completed_after_a_decline_or_cancel_is_refunded(
    running_app, settings, emulator, closing
) -> None:
    client, _ = await patient_client(running_app, "GB")
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        session_id, payment = await checkout(client, case)
        if closing == "decline":
            url, data, who = (
                f"/staff/cases/{case.uid}/decline",
                {"reason": "Not for us."},
                coordinator,
            )
        else:
            url, data, who = f"/requests/{case.uid}/cancel", {"confirm": "yes"}, client
        assert (await post_form(who, url, data)).status_code == 303
        # The open checkout is closed, here and at Stripe.
        assert emulator.sessions[session_id]["status"] == "expired"
        cancelled = await Payment.objects().where(Payment.id == payment.id).first()
        assert cancelled.status == "cancelled"
        # Paid on Stripe's page in the same moment: the money goes back, the case stays closed.
        response = await deliver(client, emulator.event("checkout.session.completed", session_id))
        assert response.status_code == 200
    payment = await Payment.objects().where(Payment.id == payment.id).first()
    assert payment.status == "refunded"
    assert (
        len(stripe_calls(emulator, "/v1/refunds", **{"metadata[payment]": str(payment.uid)})) == 1
    )
    stored = await cases.get_case(str(case.uid))
    assert stored.status == {"decline": "declined", "cancel": "cancelled"}[closing]
    assert stored.received_at is None
    assert await AuditEvent.count().where(AuditEvent.action == "payment.succeeded") == 0
    assert await AuditEvent.count().where(AuditEvent.action == "payment.surplus") == 1
    subjects = [m["subject"] for m in await read_mail(settings)]
    assert not any(s.startswith("Payment received") for s in subjects)


async def test_refund_notices_of_other_systems_are_acknowledged(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    async with aclosing(client):
        case = await submitted_case(client)
        session_id, payment = await checkout(client, case)
        # A refund of a charge another system on the same Stripe account made: acknowledged
        # (Stripe stops sending it), nothing changes.
        assert (await deliver(client, emulator.foreign_refund())).status_code == 200
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == (
            "pending"
        )
        assert await LedgerEntry.count() == 0
        # Ours, overtaking its payment notice: Stripe is asked to deliver it again (503)…
        assert (
            await deliver(client, emulator.event("charge.refunded", session_id))
        ).status_code == 503
        # …for a day; after that the payment notice is not coming: acknowledged and applied.
        stale = emulator.event("charge.refunded", session_id, created=int(time.time()) - 25 * 3600)
        assert (await deliver(client, stale)).status_code == 200
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == (
            "refunded"
        )
        unmatched = await AuditEvent.objects().where(
            AuditEvent.action == "payment.refund_unmatched"
        )
        assert len(unmatched) == 1 and unmatched[0].outcome == "failure"
        # The payment notice, if it still came, can no longer make the case paid.
        await deliver(client, emulator.event("checkout.session.completed", session_id))
        assert (await cases.get_case(str(case.uid))).status == "submitted"
    assert (await Payment.objects().where(Payment.id == payment.id).first()).status == "refunded"
    assert [e.kind for e in await LedgerEntry.objects()] == ["refund"]


async def test_a_failed_refund_is_retried_by_a_coordinator(running_app, emulator) -> None:
    client, _ = await patient_client(running_app, "GB")
    coordinator = await staff_client(running_app)
    async with aclosing(client), aclosing(coordinator):
        case = await submitted_case(client)
        session_id, payment = await checkout(client, case)
        await deliver(client, emulator.event("checkout.session.completed", session_id))
        emulator.fail_next = 1  # Stripe is down when the case is declined
        response = await post_form(
            coordinator, f"/staff/cases/{case.uid}/decline", {"reason": "Outside our scope."}
        )
        assert response.status_code == 303
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == (
            "refund_due"
        )
        page = (await coordinator.get(f"/staff/cases/{case.uid}")).text
        assert "Refund to be paid by our staff" in page and "Try the refunds again" in page
        assert case.reference in (await coordinator.get("/staff/cases?queue=refunds")).text
        emulator.refund_status = "pending"  # Stripe accepts it now and finishes it later
        try:
            response = await post_form(coordinator, f"/staff/cases/{case.uid}/refunds")
        finally:
            emulator.refund_status = "succeeded"
        assert response.status_code == 303
        assert (await Payment.objects().where(Payment.id == payment.id).first()).status == (
            "refund_pending"
        )
        assert case.reference not in (await coordinator.get("/staff/cases?queue=refunds")).text
        await deliver(client, emulator.event("charge.refunded", session_id))
    assert (await Payment.objects().where(Payment.id == payment.id).first()).status == "refunded"
    refunds = stripe_calls(emulator, "/v1/refunds", **{"metadata[payment]": str(payment.uid)})
    assert len(refunds) == 2  # the failed call and the coordinator's retry, with one key
    assert {r[1]["idempotency-key"] for r in refunds} == {f"consilium-refund-{payment.uid}"}
    kinds = [e.kind for e in await LedgerEntry.objects().order_by(LedgerEntry.id)]
    assert kinds == ["charge", "refund_pending", "refund"]
    outcomes = [
        a.outcome
        for a in await AuditEvent.objects()
        .where(AuditEvent.action == "payment.refund")
        .order_by(AuditEvent.seq)
    ]
    assert outcomes == ["failure", "success"]

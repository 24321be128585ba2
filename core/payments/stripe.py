"""Stripe Checkout: a hosted checkout session, paid status only from signed webhooks.

Outbound calls are form-encoded POSTs to the Stripe API with the secret key as bearer token and
an `Idempotency-Key`, so a retried request returns the same session or refund. Webhooks are
verified over the raw body (`Stripe-Signature`, with a timestamp tolerance) before anything in
them is read. No card data ever reaches this service: the card form is Stripe's page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx

from core.payment_providers import (
    EXPIRED,
    FAILED,
    REFUNDED,
    SUCCEEDED,
    Checkout,
    CheckoutStarted,
    PaymentEvent,
    PaymentProvider,
    ProviderError,
    Refund,
    RefundResult,
    WebhookRejected,
)
from core.payments import webhook_signature
from core.settings import Settings

UNREACHABLE = (
    "The card payment service did not answer. Nothing was charged. Please try again in a few "
    "minutes."
)
SESSION_EVENTS = {
    "checkout.session.completed": SUCCEEDED,  # only when its payment_status is "paid"
    "checkout.session.async_payment_succeeded": SUCCEEDED,
    "checkout.session.async_payment_failed": FAILED,
    "checkout.session.expired": EXPIRED,
}
# A request with an idempotency key that another request is still using gets 409
# `idempotency_key_in_use` (two clicks at once): wait for the first to finish, then Stripe
# answers with its saved result.
KEY_IN_USE_RETRIES = (0.2, 0.5, 1.0, 2.0)


class StripeProvider(PaymentProvider):
    name = "stripe"
    label = "Pay by card"
    description = "Visa, Mastercard and others, on Stripe's secure page."
    method = "Card (Stripe)"

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        assert settings.stripe_secret_key and settings.stripe_webhook_secret
        self.secret_key = settings.stripe_secret_key
        self.webhook_secret = settings.stripe_webhook_secret.encode()
        self.api_base = settings.stripe_api_base.rstrip("/")
        self.tolerance = settings.stripe_webhook_tolerance_seconds
        self.transport = transport

    async def _post(self, path: str, form: dict[str, str], idempotency_key: str) -> dict:
        headers = {
            "Authorization": f"Bearer {self.secret_key}",
            "Idempotency-Key": idempotency_key,
        }
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=20.0) as client:
                for pause in (*KEY_IN_USE_RETRIES, None):
                    response = await client.post(self.api_base + path, data=form, headers=headers)
                    if pause is None or not _key_in_use(response):
                        break
                    await asyncio.sleep(pause)
        except httpx.HTTPError:
            raise ProviderError(UNREACHABLE) from None
        if response.status_code >= 500 or response.status_code == 429 or _key_in_use(response):
            raise ProviderError(UNREACHABLE)
        try:
            data = response.json()
        except ValueError:
            raise ProviderError(UNREACHABLE) from None
        if response.status_code >= 400:
            raise ProviderError(
                "The card payment service refused the request. Nothing was charged. "
                "Please try again, or choose another way to pay."
            )
        return data

    async def start_checkout(self, checkout: Checkout) -> CheckoutStarted:
        form = {
            "mode": "payment",
            "success_url": checkout.success_url,
            "cancel_url": checkout.cancel_url,
            "client_reference_id": checkout.payment_uid,
            "customer_email": checkout.customer_email,
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": checkout.currency.lower(),
            "line_items[0][price_data][unit_amount]": str(checkout.amount_minor),
            "line_items[0][price_data][product_data][name]": checkout.description,
            "metadata[payment]": checkout.payment_uid,
            "metadata[case_reference]": checkout.case_reference,
            "payment_intent_data[metadata][payment]": checkout.payment_uid,
        }
        session = await self._post("/v1/checkout/sessions", form, checkout.idempotency_key)
        if not isinstance(session.get("id"), str) or not isinstance(session.get("url"), str):
            raise ProviderError(UNREACHABLE)
        return CheckoutStarted(provider_ref=session["id"], redirect_url=session["url"])

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> list[PaymentEvent]:
        webhook_signature.verify(
            self.webhook_secret,
            body,
            headers.get("stripe-signature"),
            now=now,
            tolerance=self.tolerance,
        )
        try:
            event = json.loads(body)
            return _events(event)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookRejected(f"malformed Stripe event: {exc}") from None

    async def cancel_checkout(self, provider_ref: str, idempotency_key: str) -> None:
        """Expire the Checkout Session; Stripe refuses (400) once it is complete or expired."""
        await self._post(f"/v1/checkout/sessions/{provider_ref}/expire", {}, idempotency_key)

    async def refund(self, refund: Refund) -> RefundResult:
        if not refund.charge_ref:
            return RefundResult(status="manual")
        form = {
            "payment_intent": refund.charge_ref,
            "amount": str(refund.amount_minor),
            "metadata[payment]": refund.payment_uid,
        }
        result = await self._post("/v1/refunds", form, refund.idempotency_key)
        status = result.get("status")
        if status == "succeeded":
            return RefundResult(status="refunded", reference=str(result.get("id", "")))
        if status in ("pending", "requires_action"):
            return RefundResult(status="pending", reference=str(result.get("id", "")))
        raise ProviderError("The card payment service could not refund this payment.")


def _key_in_use(response: httpx.Response) -> bool:
    if response.status_code != 409:
        return False
    try:
        return response.json()["error"]["code"] == "idempotency_key_in_use"
    except (ValueError, KeyError, TypeError):
        return False


def _events(event: dict[str, Any]) -> list[PaymentEvent]:
    kind, obj = event["type"], event["data"]["object"]
    created = float(event.get("created") or 0)
    if kind in SESSION_EVENTS:
        if kind == "checkout.session.completed" and obj.get("payment_status") != "paid":
            return []  # a delayed method: async_payment_succeeded / _failed follows
        return [
            PaymentEvent(
                event_id=event["id"],
                kind=SESSION_EVENTS[kind],  # type: ignore[arg-type]
                provider_ref=obj["id"],
                amount_minor=int(obj.get("amount_total") or 0),
                currency=str(obj.get("currency") or "").upper(),
                charge_ref=str(obj.get("payment_intent") or ""),
                method=StripeProvider.method,
                message="The card payment did not go through." if kind.endswith("failed") else "",
                created_at=created,
            )
        ]
    if kind == "charge.refunded" and obj.get("refunded"):
        return [
            PaymentEvent(
                event_id=event["id"],
                kind=REFUNDED,
                provider_ref="",
                amount_minor=int(obj.get("amount_refunded") or 0),
                currency=str(obj.get("currency") or "").upper(),
                charge_ref=str(obj.get("payment_intent") or ""),
                # The charge carries its PaymentIntent's metadata, which start_checkout set
                # (payment_intent_data[metadata][payment]); a charge without it is not ours.
                payment_uid=str((obj.get("metadata") or {}).get("payment") or ""),
                created_at=created,
            )
        ]
    return []  # events this service does not act on

"""The payment providers core ships, registered through the same hook a plugin uses.

- `sandbox`: a clearly labelled test checkout; its outcome comes back as a signed notification
  through the same webhook code as a real provider (refused in production).
- `offline`: bank transfer or the cash desk; a coordinator records the payment.
- `stripe`: Stripe Checkout, offered when its keys are set (core.payments.stripe).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from core.hookspecs import hookimpl
from core.keys import derive_key
from core.payment_providers import (
    Checkout,
    CheckoutStarted,
    PaymentEvent,
    PaymentProvider,
    Refund,
    RefundResult,
    WebhookRejected,
)
from core.payments import webhook_signature
from core.settings import Settings

SANDBOX_SIGNATURE_HEADER = "sandbox-signature"
SANDBOX_OUTCOMES = {"succeed": "succeeded", "fail": "failed", "expire": "expired"}


class SandboxProvider(PaymentProvider):
    name = "sandbox"
    label = "Pay online (test)"
    description = "A test checkout: no real money moves. For trying the service."
    method = "Test card"
    test_mode = True

    def __init__(self, settings: Settings) -> None:
        self.secret = derive_key(settings, "payments-sandbox-webhook")

    async def start_checkout(self, checkout: Checkout) -> CheckoutStarted:
        return CheckoutStarted(
            provider_ref=f"sbx_{checkout.payment_uid}",
            redirect_url=f"/payments/sandbox/{checkout.payment_uid}",
        )

    def notification(
        self, *, provider_ref: str, outcome: str, amount_minor: int, currency: str, event_id: str
    ) -> tuple[dict[str, str], bytes]:
        """The signed notification the sandbox 'service' sends for a person's choice."""
        body = json.dumps(
            {
                "id": event_id,
                "type": SANDBOX_OUTCOMES[outcome],
                "checkout": provider_ref,
                "amount": amount_minor,
                "currency": currency,
            }
        ).encode()
        return {SANDBOX_SIGNATURE_HEADER: webhook_signature.sign(self.secret, body)}, body

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> list[PaymentEvent]:
        webhook_signature.verify(
            self.secret, body, headers.get(SANDBOX_SIGNATURE_HEADER), now=now, tolerance=300
        )
        try:
            data = json.loads(body)
            kind = data["type"]
            if kind not in SANDBOX_OUTCOMES.values():
                raise ValueError(kind)
            message = "The test card was declined." if kind == "failed" else ""
            return [
                PaymentEvent(
                    event_id=str(data["id"]),
                    kind=kind,
                    provider_ref=str(data["checkout"]),
                    amount_minor=int(data["amount"]),
                    currency=str(data["currency"]),
                    charge_ref=f"sbx_charge_{data['checkout']}",
                    method=self.method,
                    message=message,
                )
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected(f"malformed sandbox event: {exc}") from None

    async def refund(self, refund: Refund) -> RefundResult:
        return RefundResult(status="refunded", reference=f"sbx_refund_{refund.payment_uid}")


class OfflineProvider(PaymentProvider):
    name = "offline"
    label = "Pay by bank transfer or at the hospital"
    description = "You get a payment reference. We start once our staff see your payment."
    method = "Bank transfer"
    online = False

    def __init__(self, settings: Settings) -> None:
        self.instructions = settings.offline_payment_instructions

    async def start_checkout(self, checkout: Checkout) -> CheckoutStarted:
        return CheckoutStarted(provider_ref=f"off_{checkout.payment_uid}", redirect_url=None)

    async def refund(self, refund: Refund) -> RefundResult:
        return RefundResult(status="manual")


@hookimpl
def consilium_payment_providers(settings: Settings) -> list[PaymentProvider]:
    from core.payments.stripe import StripeProvider

    providers: list[PaymentProvider] = [SandboxProvider(settings), OfflineProvider(settings)]
    if settings.stripe_secret_key and settings.stripe_webhook_secret:
        providers.append(StripeProvider(settings))
    return providers

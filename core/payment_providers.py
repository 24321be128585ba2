"""The payment-provider contract: what a provider plugin implements (see docs/plugins.md).

Core owns the money rules: the fee, the ledger, deduplication of events, amount and currency
checks, and when a case counts as paid. A provider only talks to its payment service: it starts
a checkout, turns the service's signed notifications into `PaymentEvent`s, and refunds. A case is
marked paid only from a verified event, never from the browser coming back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

SUCCEEDED = "succeeded"
FAILED = "failed"
EXPIRED = "expired"
REFUNDED = "refunded"

EventKind = Literal["succeeded", "failed", "expired", "refunded"]


class ProviderError(Exception):
    """The provider could not do it (unreachable, refused). `message` is for the patient."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WebhookRejected(Exception):
    """A notification that must not be trusted (bad signature, too old, malformed)."""


@dataclass(frozen=True)
class Checkout:
    """What core asks a provider to collect. `idempotency_key` is the same for every retry of
    one payment attempt: send it to the service so a retry never makes a second charge."""

    payment_uid: str
    case_reference: str
    description: str
    amount_minor: int
    currency: str  # ISO 4217, upper case
    idempotency_key: str
    success_url: str  # absolute; the person comes back here (this proves nothing)
    cancel_url: str
    customer_email: str


@dataclass(frozen=True)
class CheckoutStarted:
    provider_ref: str  # the service's id for this checkout, e.g. Stripe's "cs_…"
    redirect_url: str | None  # where to send the person; None when nothing happens online


@dataclass(frozen=True)
class PaymentEvent:
    """One verified notification. `event_id` is unique per provider (core deduplicates it)."""

    event_id: str
    kind: EventKind
    provider_ref: str  # the checkout it is about (CheckoutStarted.provider_ref)
    amount_minor: int
    currency: str
    charge_ref: str = ""  # the service's id of the charge, used to refund (e.g. "pi_…")
    method: str = ""  # how it was paid, for the receipt ("Card", "Visa •••• 4242" never!)
    message: str = ""  # why it failed, in words a patient understands
    # Checkout.payment_uid when the service echoes it back (e.g. Stripe metadata). A `refunded`
    # event naming none of our charges and no payment_uid is another system's and is ignored.
    payment_uid: str = ""
    created_at: float = 0.0  # when the service created the event (Unix time); 0 if unknown


@dataclass(frozen=True)
class Refund:
    payment_uid: str
    provider_ref: str
    charge_ref: str
    amount_minor: int
    currency: str
    idempotency_key: str


@dataclass(frozen=True)
class RefundResult:
    status: Literal["refunded", "pending", "manual"]  # manual: staff pay it back by hand
    reference: str = ""


class PaymentProvider:
    """Subclass this and return an instance from `consilium_payment_providers`."""

    name: str = ""  # stable id, stored on payments: "stripe", "jazzcash"
    label: str = ""  # the patient's button: "Pay by card"
    description: str = ""  # one sentence under the button
    method: str = ""  # default payment method shown on receipts: "Card"
    online: bool = True  # False: staff record the payment (bank transfer, cash desk)
    test_mode: bool = False  # True: pages say clearly that no real money moves

    async def start_checkout(self, checkout: Checkout) -> CheckoutStarted:
        raise NotImplementedError

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: float
    ) -> list[PaymentEvent]:
        """Verify `body` exactly as received (raw bytes) and return its events, or raise
        WebhookRejected. `now` is the current Unix time, for the signature's tolerance."""
        raise WebhookRejected("this provider takes no notifications")

    async def refund(self, refund: Refund) -> RefundResult:
        return RefundResult(status="manual")

    async def cancel_checkout(self, provider_ref: str, idempotency_key: str) -> None:
        """Close an unpaid checkout (the case was paid another way, declined or cancelled) so
        it can no longer be paid. Best effort: raise ProviderError if the service refuses (a
        checkout completed meanwhile); a payment that still arrives is refunded by core."""
        return None

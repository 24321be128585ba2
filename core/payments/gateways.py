"""The payment providers plugins offer (core/payment_providers.py), which of them patients see,
and closing the checkouts of attempts that are no longer needed."""

from __future__ import annotations

import logging

from core import context
from core.cases.tables import Case
from core.payment_providers import (
    PaymentProvider,
    ProviderError,
)
from core.payments.ledger import CANCELLED, PENDING, PaymentRefused, advance, payments_of
from core.payments.tables import (
    Payment,
)

log = logging.getLogger("consilium.payments")


def installed() -> dict[str, PaymentProvider]:
    """Every provider a plugin offers, listed in the settings or not (old payments need theirs
    for webhooks and refunds)."""
    return context.plugins().payment_providers(context.settings())


def providers() -> dict[str, PaymentProvider]:
    """The providers offered to patients, in the order the settings give."""
    available = installed()
    return {n: available[n] for n in context.settings().payment_providers if n in available}


def provider(name: str) -> PaymentProvider:
    found = installed().get(name)
    if found is None:
        raise PaymentRefused("That way of paying is not available.")
    return found


def provider_online(name: str) -> bool:
    found = installed().get(name)
    return found.online if found else True


async def cancel_open_attempts(case: Case, message: str) -> list[Payment]:
    """Mark the case's open (pending) attempts cancelled; returns them, for `close_checkouts`
    once the transaction committed. Call with the case row locked (or just changed)."""
    closed = []
    for payment in await payments_of(case):
        if payment.status == PENDING and await advance(payment, CANCELLED, message=message):
            closed.append(payment)
    return closed


async def close_checkouts(closed: list[Payment]) -> None:
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

"""Stripe's webhook signature scheme: `t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`.

Used by the Stripe provider and, with its own key, by the sandbox, so the test checkout goes
through the same verification as a real notification.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from core.payment_providers import WebhookRejected


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str | None, *, now: float, tolerance: int) -> None:
    """Raise WebhookRejected unless `header` signs exactly `body` within `tolerance` seconds."""
    if not header:
        raise WebhookRejected("no signature")
    stamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            stamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if stamp is None or not signatures:
        raise WebhookRejected("malformed signature header")
    if abs(now - stamp) > tolerance:
        raise WebhookRejected("signature timestamp outside the tolerance")
    expected = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookRejected("signature does not match")

"""Keys derived from the deployment's secret, one per purpose (CSRF, audit chain, TOTP sealing,
device cookies, sandbox signatures…), so that one leaked derived key exposes nothing else."""

from __future__ import annotations

import hmac
from hashlib import sha256

from core.settings import Settings


def derive_key(settings: Settings, purpose: str) -> bytes:
    return hmac.new(settings.secret, purpose.encode(), sha256).digest()

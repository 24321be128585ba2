"""Unguessable tokens for emailed links: generated once, stored only as a hash (ASVS 11.5.1)."""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> tuple[str, str]:
    """(token for the link, hash for the database)."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    # The token has 256 bits of entropy, so a plain SHA-256 cannot be brute-forced back.
    return hashlib.sha256(token.encode()).hexdigest()

"""Password hashing (argon2id) and the password policy (docs/security.md 1).

Policy follows NIST SP 800-63B / ASVS 6.2: at least 8 characters, long passphrases welcome,
no composition rules, and a blocklist of common passwords. The length cap keeps hashing from
being used to exhaust the server.
"""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 8
MAX_LENGTH = 1024

# argon2-cffi's defaults (argon2id, 64 MiB, t=3, p=4) exceed OWASP's minimum (19 MiB, t=2).
hasher = PasswordHasher()
_slots: asyncio.Semaphore | None = None
_slots_size = 4


def configure_concurrency(size: int) -> None:
    """Bound how many hashes run at once: each holds 64 MiB and a core for ~0.1 s."""
    global _slots, _slots_size
    _slots, _slots_size = None, size


def _semaphore() -> asyncio.Semaphore:
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(_slots_size)
    return _slots


@cache
def _blocklist() -> frozenset[str]:
    # 30,000 most common passwords from real breaches, as shipped with zxcvbn.
    return frozenset(
        word.lower() for word in FREQUENCY_LISTS["passwords"] if len(word) >= MIN_LENGTH
    )


def policy_problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why `password` is refused, in words for the person choosing it; None when it is fine."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters. A few words together make a strong password."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    if lowered in _blocklist():
        return (
            "This password is one of the most common ones and easy to guess. Please choose another."
        )
    local = email.split("@", 1)[0].lower()
    if (
        (local and lowered == local)
        or lowered == email.lower()
        or (name and lowered == name.lower())
    ):
        return "Your password should not be your email address or name."
    return None


async def hash_password(password: str) -> str:
    async with _semaphore():
        return await asyncio.to_thread(hasher.hash, password)


# Verifying against this keeps the time of a failed sign-in the same for unknown emails.
_DUMMY_HASH = hasher.hash("not-a-real-password-consilium")


async def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash). Unknown users pass `None` and still pay for one hash."""
    if len(password) > MAX_LENGTH:
        return False, False
    async with _semaphore():
        try:
            await asyncio.to_thread(hasher.verify, stored_hash or _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
    if stored_hash is None:
        return False, False
    return True, hasher.check_needs_rehash(stored_hash)

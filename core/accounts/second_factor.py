"""TOTP two-factor authentication (docs/security.md 2) and recovery codes.

A code's 30-second time step is accepted once only (ASVS 6.3.2): the last used step is stored
and advanced with a conditional UPDATE, so two simultaneous uses of one code cannot both pass.
The TOTP secret is sealed in the database with a key derived from the app secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import secrets
import time

import pyotp
import qrcode
import qrcode.image.svg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core import clock, context, db
from core.accounts import passwords
from core.accounts.tables import RecoveryCode, User
from core.audit import service as audit
from core.keys import derive_key
from core.roles import STAFF_ROLES

RECOVERY_CODE_COUNT = 10
ISSUER = "Consilium"


def _aead() -> AESGCM:
    return AESGCM(derive_key(context.settings(), "totp-secret"))


def seal_secret(user: User, secret: str) -> str:
    nonce = os.urandom(12)
    sealed = _aead().encrypt(nonce, secret.encode(), str(user.uid).encode())
    return base64.b64encode(nonce + sealed).decode()


def open_secret(user: User) -> str | None:
    if not user.totp_secret:
        return None
    raw = base64.b64decode(user.totp_secret)
    return _aead().decrypt(raw[:12], raw[12:], str(user.uid).encode()).decode()


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: User, secret: str) -> str:
    issuer = context.settings().hospital_name or ISSUER
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def qr_data_uri(text: str) -> str:
    """An SVG QR code as a data: URI (allowed by the CSP's img-src; no inline script or style)."""
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step whose code equals `code`, allowing one step of clock drift either way."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int((at if at is not None else time.time()) // totp.interval)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _hash_recovery(code: str) -> str:
    normalised = "".join(ch for ch in code.lower() if ch.isalnum())
    return hashlib.sha256(normalised.encode()).hexdigest()


async def _use_step(user: User, step: int) -> bool:
    updated = (
        await User.update({User.totp_last_step: step})
        .where(
            (User.id == user.id) & (User.totp_last_step.is_null() | (User.totp_last_step < step))
        )
        .returning(User.id)
    )
    return bool(updated)


async def _use_recovery_code(user: User, code: str) -> bool:
    updated = (
        await RecoveryCode.update({RecoveryCode.used_at: clock.now()})
        .where(
            (RecoveryCode.user == user.id)
            & (RecoveryCode.code_hash == _hash_recovery(code))
            & RecoveryCode.used_at.is_null()
        )
        .returning(RecoveryCode.id)
    )
    return bool(updated)


async def check_code(user: User, code: str) -> str | None:
    """'totp' or 'recovery_code' when the code is good (and now spent); None otherwise."""
    secret = open_secret(user)
    if secret is None:
        return None
    step = _matching_step(secret, code)
    if step is not None:
        return "totp" if await _use_step(user, step) else None
    if len(code.strip()) >= 10 and await _use_recovery_code(user, code):
        return "recovery_code"
    return None


async def check_totp(user: User, code: str) -> bool:
    """A current code from the authenticator app (spent: a code works once). Recovery codes do
    not count: signing a review needs the device itself."""
    secret = open_secret(user)
    step = _matching_step(secret, code) if secret else None
    return step is not None and await _use_step(user, step)


async def _new_recovery_codes(user: User) -> list[str]:
    await RecoveryCode.delete().where(RecoveryCode.user == user.id)
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = secrets.token_hex(5)  # 40 bits each; single use, behind the password
        code = f"{raw[:5]}-{raw[5:]}"
        codes.append(code)
        await RecoveryCode.insert(RecoveryCode(user=user.id, code_hash=_hash_recovery(code)))
    return codes


async def enable(user: User, secret: str, code: str, *, ip: str | None) -> list[str] | None:
    """Turn on TOTP after the person proves their app shows the right code.

    Returns the recovery codes (shown once), or None when the code was wrong.
    """
    step = _matching_step(secret, code)
    if step is None:
        return None
    async with db.transaction():
        await User.update(
            {
                User.totp_secret: seal_secret(user, secret),
                User.totp_enabled_at: clock.now(),
                User.totp_last_step: step,
            }
        ).where(User.id == user.id)
        codes = await _new_recovery_codes(user)
        await audit.record("mfa.enable", actor=user, subject_uid=str(user.uid), ip=ip)
    return codes


async def regenerate_recovery_codes(user: User, *, ip: str | None) -> list[str]:
    async with db.transaction():
        codes = await _new_recovery_codes(user)
        await audit.record("mfa.recovery_codes", actor=user, subject_uid=str(user.uid), ip=ip)
    return codes


async def remaining_recovery_codes(user: User) -> int:
    return await RecoveryCode.count().where(
        (RecoveryCode.user == user.id) & RecoveryCode.used_at.is_null()
    )


# What `disable` did.
DISABLED, KEPT_FOR_STAFF, WRONG_PASSWORD = "disabled", "kept_for_staff", "wrong_password"


async def disable(user: User, password: str, *, ip: str | None) -> str:
    """Patients may turn two-factor off, with their password; staff may not (it is required
    for them)."""
    if user.role in STAFF_ROLES:
        return KEPT_FOR_STAFF
    ok, _ = await passwords.verify_password(user.password_hash, password)
    if not ok:
        await audit.record(
            "mfa.disable", actor=user, subject_uid=str(user.uid), ip=ip, outcome="failure"
        )
        return WRONG_PASSWORD
    async with db.transaction():
        await User.update(
            {User.totp_secret: None, User.totp_enabled_at: None, User.totp_last_step: None}
        ).where(User.id == user.id)
        await RecoveryCode.delete().where(RecoveryCode.user == user.id)
        await audit.record("mfa.disable", actor=user, subject_uid=str(user.uid), ip=ip)
    return DISABLED

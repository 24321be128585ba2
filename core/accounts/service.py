"""Accounts: registration, sign-in, second factor, resets, profiles and staff.

Every function here is callable without HTTP (tests, CLI). Answers never reveal whether an
email has an account (docs/security.md 3): registration and reset behave the same either way
(a reset request only queues a row; the outbox worker looks the address up), and a failed
sign-in costs the same time and gives the same message.

Guessing passwords (docs/security.md 4) is slowed with OWASP's device cookies
(https://owasp.org/www-community/Slow_Down_Online_Guessing_Attacks_with_Device_Cookies). A
browser that signed in gets a device cookie: an HMAC of the account's email, a random nonce and
a MAC over both, under keys derived from the secret. Wrong passwords sent without a valid device
cookie for that email count per email: after FREE_FAILURES each one doubles a wait, up to
MAX_DELAY. Attempts with one count per cookie instead and skip the per-email wait, so an
attacker's steady failures cannot lock the owner out of browsers they used before, and a stolen
device cookie gets the same wait of its own.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import pycountry
from email_validator import EmailNotValidError, validate_email

from core import clock, context, db
from core.accounts import passwords, second_factor
from core.accounts.tables import (
    AuthToken,
    DoctorSpecialty,
    LoginThrottle,
    ResetRequest,
    User,
)
from core.audit import service as audit
from core.errors import InvalidInput
from core.ids import parse_uuid
from core.keys import derive_key
from core.notifications import service as notifications
from core.roles import (
    ADMIN,
    AUTH_ENROL,
    AUTH_FULL,
    AUTH_SECOND_FACTOR,
    COORDINATOR,
    DOCTOR,
    PATIENT,
    STAFF_ROLES,
)
from core.tokens import new_token, token_hash

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
STAFF_INVITE = "staff_invite"
TOKEN_LIFETIME = {
    VERIFY_EMAIL: timedelta(days=2),
    RESET_PASSWORD: timedelta(hours=1),
    STAFF_INVITE: timedelta(days=3),
}

# Progressive delay: after FREE_FAILURES wrong passwords, each further one doubles the wait,
# up to MAX_DELAY. Counted per email for unknown browsers and per device cookie for known ones
# (see the module docstring), so an attacker cannot lock a person out for good.
FREE_FAILURES = 5
FIRST_DELAY = timedelta(seconds=15)
MAX_DELAY = timedelta(minutes=15)

COUNTRIES = sorted(((c.alpha_2, c.name) for c in pycountry.countries), key=lambda pair: pair[1])
_COUNTRY_CODES = {code for code, _ in COUNTRIES}

log = logging.getLogger("consilium.accounts")


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _email_problem(email: str) -> str | None:
    if not email:
        return "Enter your email address."
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return "Enter an email address like name@example.com."
    return None


# Looking users up --------------------------------------------------------------------------


async def get_active_user(uid: str) -> User | None:
    parsed = parse_uuid(uid)
    if parsed is None:
        return None
    return await User.objects().where((User.uid == parsed) & (User.is_active.eq(True))).first()


async def get_user(uid: str) -> User | None:
    parsed = parse_uuid(uid)
    if parsed is None:
        return None
    return await User.objects().where(User.uid == parsed).first()


async def get_user_by_email(email: str) -> User | None:
    return await User.objects().where(User.email == normalise_email(email)).first()


async def uids_with_email(email: str) -> list[str]:
    """The uid of the account with this email, as a list (empty when there is none)."""
    rows = await User.select(User.uid).where(User.email == normalise_email(email))
    return [str(row["uid"]) for row in rows]


async def emails_by_uid(uids: Iterable[str]) -> dict[str, str]:
    """uid → email for the accounts among `uids` (others, and ids that are not uids, left out)."""
    wanted = {parsed for parsed in (parse_uuid(uid) for uid in uids) if parsed}
    if not wanted:
        return {}
    rows = await User.select(User.uid, User.email).where(User.uid.is_in(list(wanted)))
    return {str(row["uid"]): row["email"] for row in rows}


# Tokens ------------------------------------------------------------------------------------


async def _issue_token(user: User, purpose: str) -> str:
    token, hashed = new_token()
    await AuthToken.insert(
        AuthToken(
            purpose=purpose,
            token_hash=hashed,
            user=user.id,
            expires_at=clock.now() + TOKEN_LIFETIME[purpose],
        )
    )
    return token


async def peek_token(token: str, *purposes: str) -> User | None:
    """The user a still-valid token belongs to, without using it (for showing a form)."""
    row = (
        await AuthToken.objects()
        .where(
            (AuthToken.token_hash == token_hash(token))
            & AuthToken.purpose.is_in(list(purposes))
            & AuthToken.used_at.is_null()
            & (AuthToken.expires_at > clock.now())
        )
        .first()
    )
    if row is None:
        return None
    return await User.objects().where((User.id == row.user) & User.is_active.eq(True)).first()


async def _use_token(token: str, *purposes: str) -> tuple[User, str] | None:
    """Mark a token used, atomically: of two concurrent uses only one succeeds."""
    used = (
        await AuthToken.update({AuthToken.used_at: clock.now()})
        .where(
            (AuthToken.token_hash == token_hash(token))
            & AuthToken.purpose.is_in(list(purposes))
            & AuthToken.used_at.is_null()
            & (AuthToken.expires_at > clock.now())
        )
        .returning(AuthToken.user, AuthToken.purpose)
    )
    if not used:
        return None
    user = (
        await User.objects().where((User.id == used[0]["user"]) & User.is_active.eq(True)).first()
    )
    return (user, used[0]["purpose"]) if user else None


def _link(path: str) -> str:
    return f"{context.settings().base_url}{path}"


# Registration ------------------------------------------------------------------------------


def _profile_errors(full_name: str, phone: str, country: str) -> dict[str, str]:
    errors = {}
    if not full_name.strip():
        errors["full_name"] = "Enter your full name."
    elif len(full_name) > 200:
        errors["full_name"] = "Use at most 200 characters for your name."
    if len(phone) > 40 or any(ch not in "0123456789 +-()." for ch in phone):
        errors["phone"] = "Enter a phone number using digits, spaces and + only."
    if country not in _COUNTRY_CODES:
        errors["country"] = "Choose the country you live in."
    return errors


async def register_patient(
    *, email: str, password: str, full_name: str, phone: str, country: str, ip: str | None
) -> None:
    """Create a patient account and email a verification link.

    If the email already has an account, that person gets an email saying so instead; the
    answer to the browser is the same either way.
    """
    email = normalise_email(email)
    errors = _profile_errors(full_name, phone, country)
    if problem := _email_problem(email):
        errors["email"] = problem
    if problem := passwords.policy_problem(password, email=email, name=full_name):
        errors["password"] = problem
    if errors:
        raise InvalidInput(errors)
    password_hash = await passwords.hash_password(password)
    async with db.transaction():
        existing = await get_user_by_email(email)
        if existing is not None:
            await notifications.enqueue(
                to=email, template="account_exists", context={"login_link": _link("/login")}
            )
            return
        user = User(
            email=email,
            password_hash=password_hash,
            role=PATIENT,
            full_name=full_name.strip(),
            phone=phone.strip(),
            country=country,
        )
        await User.insert(user)
        token = await _issue_token(user, VERIFY_EMAIL)
        await notifications.enqueue(
            to=email,
            template="verify_email",
            context={"link": _link(f"/verify-email/{token}")},
        )
        await audit.record("account.register", actor=user, subject_uid=str(user.uid), ip=ip)


async def resend_verification(user: User) -> None:
    if user.email_verified_at is not None:
        return
    async with db.transaction():
        token = await _issue_token(user, VERIFY_EMAIL)
        await notifications.enqueue(
            to=user.email,
            template="verify_email",
            context={"link": _link(f"/verify-email/{token}")},
        )


async def confirm_email(token: str, *, ip: str | None) -> bool:
    async with db.transaction():
        used = await _use_token(token, VERIFY_EMAIL)
        if used is None:
            return False
        user, _ = used
        await User.update({User.email_verified_at: clock.now()}).where(User.id == user.id)
        await audit.record("account.email_verified", actor=user, subject_uid=str(user.uid), ip=ip)
    return True


# Signing in --------------------------------------------------------------------------------


@dataclass
class SignIn:
    """The outcome of a password check: `level` is None when it failed."""

    user: User | None = None
    level: str | None = None
    retry_after: int = 0  # seconds, when throttled


def _throttle_key(kind: str, value: str) -> str:
    key = derive_key(context.settings(), "login-throttle")
    return hmac.new(key, f"{kind}:{value}".encode(), "sha256").hexdigest()


async def _throttle_wait(key: str) -> int:
    row = await LoginThrottle.objects().where(LoginThrottle.key == key).first()
    if row is None or row.blocked_until is None:
        return 0
    remaining = (row.blocked_until - clock.now()).total_seconds()
    return max(0, int(remaining + 0.999))


async def _throttle_fail(key: str) -> None:
    async with db.transaction():
        row = await LoginThrottle.objects().where(LoginThrottle.key == key).first()
        if row is None:
            row = LoginThrottle(key=key, failures=0)
            await LoginThrottle.insert(row)
        failures = row.failures + 1
        blocked_until = None
        if failures >= FREE_FAILURES:
            delay = min(FIRST_DELAY * 2 ** (failures - FREE_FAILURES), MAX_DELAY)
            blocked_until = clock.now() + delay
        await LoginThrottle.update(
            {LoginThrottle.failures: failures, LoginThrottle.blocked_until: blocked_until}
        ).where(LoginThrottle.key == key)


async def _throttle_clear(key: str) -> None:
    await LoginThrottle.delete().where(LoginThrottle.key == key)


# Re-authentication inside a session (signing a review): the sign-in's back-off, per account,
# so a session left open cannot be used to guess the password or the code.


async def reauth_wait(user: User) -> int:
    """Seconds until this account may try its password and code again (0: now)."""
    return await _throttle_wait(_throttle_key("reauth", str(user.uid)))


async def reauth_failed(user: User) -> None:
    await _throttle_fail(_throttle_key("reauth", str(user.uid)))


async def reauth_passed(user: User) -> None:
    await _throttle_clear(_throttle_key("reauth", str(user.uid)))


def _device_mac(body: str) -> str:
    key = derive_key(context.settings(), "device-cookie")
    return _b64(hmac.new(key, body.encode(), "sha256").digest())


def _device_account(email: str) -> str:
    key = derive_key(context.settings(), "device-cookie-account")
    return _b64(hmac.new(key, normalise_email(email).encode(), "sha256").digest()[:16])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_device_cookie(user: User) -> str:
    """The value of the device cookie a browser gets when `user` signed in with it."""
    body = f"{_device_account(user.email)}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_device_mac(body)}"


def _device_nonce(cookie: str | None, email: str) -> str | None:
    """The nonce of a device cookie, when it is ours (MAC) and names this email; else None."""
    parts = cookie.split(".") if cookie and cookie.isascii() else []
    if len(parts) != 3 or not all(parts):
        return None
    account, nonce, mac = parts
    if not hmac.compare_digest(mac, _device_mac(f"{account}.{nonce}")):
        return None  # not made by us, or altered
    if not hmac.compare_digest(account, _device_account(email)):
        return None  # another account's
    return nonce


def _level_after_password(user: User) -> str:
    if user.totp_enabled_at is not None:
        return AUTH_SECOND_FACTOR
    return AUTH_ENROL if user.role in STAFF_ROLES else AUTH_FULL


async def sign_in(
    email: str, password: str, *, ip: str | None, device_cookie: str | None = None
) -> SignIn:
    """Check a password. Failures count against the browser's device cookie when it holds a
    valid one for this email, else against the email (see the module docstring)."""
    email = normalise_email(email)
    if not email or not password:
        return SignIn()  # nothing to check (and nothing to count against anyone)
    nonce = _device_nonce(device_cookie, email)
    key = _throttle_key("device", nonce) if nonce else _throttle_key("email", email)
    if wait := await _throttle_wait(key):
        await audit.record("login.throttled", outcome="denied", ip=ip)
        return SignIn(retry_after=wait)
    user = await get_user_by_email(email)
    ok, needs_rehash = await passwords.verify_password(
        user.password_hash if user else None, password
    )
    if not ok or user is None or not user.is_active:
        await _throttle_fail(key)
        reason = "unknown_email" if user is None else ("disabled" if ok else "bad_password")
        await audit.record(
            "login.failure",
            actor=user,
            subject_uid=str(user.uid) if user else None,
            outcome="failure",
            ip=ip,
            details={"reason": reason},
        )
        return SignIn()
    await _throttle_clear(key)
    values: dict = {User.last_login_at: clock.now()}
    if needs_rehash:
        values[User.password_hash] = await passwords.hash_password(password)
    await User.update(values).where(User.id == user.id)
    level = _level_after_password(user)
    action = "login.success" if level == AUTH_FULL else "login.password_ok"
    await audit.record(action, actor=user, subject_uid=str(user.uid), ip=ip)
    return SignIn(user=user, level=level)


async def complete_second_factor(user: User, code: str, *, ip: str | None) -> SignIn:
    """Check a TOTP or recovery code for a user whose password was accepted."""
    key = _throttle_key("second-factor", str(user.uid))
    if wait := await _throttle_wait(key):
        return SignIn(retry_after=wait)
    accepted = await second_factor.check_code(user, code)
    if not accepted:
        await _throttle_fail(key)
        await audit.record(
            "login.failure",
            actor=user,
            subject_uid=str(user.uid),
            outcome="failure",
            ip=ip,
            details={"reason": "bad_second_factor"},
        )
        return SignIn()
    await _throttle_clear(key)
    await audit.record(
        "login.success", actor=user, subject_uid=str(user.uid), ip=ip, details={"factor": accepted}
    )
    return SignIn(user=user, level=AUTH_FULL)


async def record_sign_out(user: User, *, ip: str | None) -> None:
    await audit.record("logout", actor=user, subject_uid=str(user.uid), ip=ip)


# Password reset and change -----------------------------------------------------------------


async def request_password_reset(email: str, *, ip: str | None) -> None:
    """Queue a reset for any well-formed address; say nothing either way.

    The request does the same work whether or not the address has an account (one row, never
    a look-up), so its timing tells nothing: `send_password_resets`, run by the outbox worker,
    finds out and emails the link.
    """
    email = normalise_email(email)
    if _email_problem(email):
        return
    async with db.transaction():
        await ResetRequest.insert(ResetRequest(email=email, ip=ip))
        db.on_commit(notifications.wake_workers)


async def send_password_resets(limit: int = 20) -> int:
    """Resolve up to `limit` queued reset requests: a real, active account gets a reset link
    and an audit row; any other address nothing. Returns how many were resolved.

    Each request is taken (deleted) in the transaction that acts on it, so of two workers only
    one acts, and a crash leaves the request for the next pass. Run outside a transaction.
    """
    done = 0
    while done < limit:
        oldest = await ResetRequest.select(ResetRequest.id).order_by(ResetRequest.id).first()
        if oldest is None:
            break
        try:
            async with db.transaction():
                taken = (
                    await ResetRequest.delete()
                    .where(ResetRequest.id == oldest["id"])
                    .returning(ResetRequest.email, ResetRequest.ip)
                )
                if not taken:
                    continue  # another worker has it
                await _send_password_reset(taken[0]["email"], ip=taken[0]["ip"])
        except Exception as exc:
            # Dropped, not retried for ever: one bad request must not hold up the others.
            log.error("password reset request not resolved: %s", type(exc).__name__)
            await ResetRequest.delete().where(ResetRequest.id == oldest["id"])
        done += 1
    return done


async def _send_password_reset(email: str, *, ip: str | None) -> None:
    user = await get_user_by_email(email)
    if user is None or not user.is_active:
        return
    token = await _issue_token(user, RESET_PASSWORD)
    await notifications.enqueue(
        to=user.email, template="password_reset", context={"link": _link(f"/reset/{token}")}
    )
    await audit.record("password.reset_requested", subject_uid=str(user.uid), ip=ip)


async def _set_password(user: User, password_hash: str) -> User:
    """New hash, and every existing session of the user ends (the epoch moves)."""
    await User.update(
        {
            User.password_hash: password_hash,
            User.session_epoch: User.session_epoch + 1,
            User.email_verified_at: user.email_verified_at or clock.now(),
        }
    ).where(User.id == user.id)
    await AuthToken.update({AuthToken.used_at: clock.now()}).where(
        (AuthToken.user == user.id)
        & AuthToken.purpose.is_in([RESET_PASSWORD, STAFF_INVITE])
        & AuthToken.used_at.is_null()
    )
    refreshed = await User.objects().where(User.id == user.id).first()
    assert refreshed is not None
    return refreshed


async def reset_password(token: str, password: str, *, ip: str | None) -> User:
    """Use a reset (or staff invite) link. Raises InvalidInput; the token stays usable then."""
    user = await peek_token(token, RESET_PASSWORD, STAFF_INVITE)
    if user is None:
        raise InvalidInput({"token": "This link has expired or was already used."})
    if problem := passwords.policy_problem(password, email=user.email, name=user.full_name):
        raise InvalidInput({"password": problem})
    password_hash = await passwords.hash_password(password)
    async with db.transaction():
        used = await _use_token(token, RESET_PASSWORD, STAFF_INVITE)
        if used is None:
            raise InvalidInput({"token": "This link has expired or was already used."})
        user, purpose = used
        user = await _set_password(user, password_hash)
        await _throttle_clear(_throttle_key("email", user.email))
        await notifications.enqueue(
            to=user.email, template="password_changed", context={"reset_link": _link("/reset")}
        )
        action = "account.invite_accepted" if purpose == STAFF_INVITE else "password.reset"
        await audit.record(action, actor=user, subject_uid=str(user.uid), ip=ip)
    return user


async def change_password(user: User, current: str, new: str, *, ip: str | None) -> User:
    ok, _ = await passwords.verify_password(user.password_hash, current)
    errors = {}
    if not ok:
        errors["current_password"] = "Your current password is not right."
    elif problem := passwords.policy_problem(new, email=user.email, name=user.full_name):
        errors["new_password"] = problem
    if errors:
        raise InvalidInput(errors)
    password_hash = await passwords.hash_password(new)
    async with db.transaction():
        user = await _set_password(user, password_hash)
        await notifications.enqueue(
            to=user.email, template="password_changed", context={"reset_link": _link("/reset")}
        )
        await audit.record("password.change", actor=user, subject_uid=str(user.uid), ip=ip)
    return user


async def sign_out_everywhere(user: User, *, ip: str | None) -> User:
    async with db.transaction():
        await User.update({User.session_epoch: User.session_epoch + 1}).where(User.id == user.id)
        await audit.record("logout.everywhere", actor=user, subject_uid=str(user.uid), ip=ip)
    refreshed = await User.objects().where(User.id == user.id).first()
    assert refreshed is not None
    return refreshed


# Profile -----------------------------------------------------------------------------------


async def update_profile(
    user: User, *, full_name: str, phone: str, country: str, ip: str | None
) -> None:
    if errors := _profile_errors(full_name, phone, country):
        raise InvalidInput(errors)
    async with db.transaction():
        await User.update(
            {User.full_name: full_name.strip(), User.phone: phone.strip(), User.country: country}
        ).where(User.id == user.id)
        await audit.record("account.profile_update", actor=user, subject_uid=str(user.uid), ip=ip)


# Staff -------------------------------------------------------------------------------------


async def doctor_specialties(user: User) -> list[str]:
    rows = await DoctorSpecialty.select(DoctorSpecialty.specialty).where(
        DoctorSpecialty.doctor == user.id
    )
    return sorted(row["specialty"] for row in rows)


async def list_staff() -> list[tuple[User, list[str]]]:
    users = await User.objects().where(User.role.is_in(list(STAFF_ROLES))).order_by(User.full_name)
    return [(user, await doctor_specialties(user)) for user in users]


def _staff_errors(
    full_name: str, role: str, specialties: list[str], known_specialties: set[str]
) -> dict[str, str]:
    errors = {}
    if not full_name.strip() or len(full_name) > 200:
        errors["full_name"] = "Enter the person's full name (at most 200 characters)."
    if role not in STAFF_ROLES:
        errors["role"] = "Choose doctor, coordinator or admin."
    unknown = set(specialties) - known_specialties
    if unknown:
        errors["specialties"] = "Choose specialties from the list."
    elif role == "doctor" and not specialties:
        errors["specialties"] = "Choose at least one specialty for a doctor."
    return errors


async def _set_specialties(user: User, specialties: list[str]) -> None:
    """Keep the rows of specialties that stay (with the subspecialties the doctor covers in
    them, core/accounts/doctors.py), remove the others, add the new ones."""
    wanted = set(specialties)
    have = set(await doctor_specialties(user))
    gone = sorted(have - wanted)
    if gone:
        await DoctorSpecialty.delete().where(
            (DoctorSpecialty.doctor == user.id) & DoctorSpecialty.specialty.is_in(gone)
        )
    for slug in sorted(wanted - have):
        await DoctorSpecialty.insert(DoctorSpecialty(doctor=user.id, specialty=slug))


async def create_staff(
    *,
    email: str,
    full_name: str,
    role: str,
    specialties: list[str],
    known_specialties: set[str],
    bio: str = "",
    by: User | None,
    password: str | None = None,
    ip: str | None = None,
) -> User:
    """Create a staff account. Without a password (the admin page) an invite link is emailed."""
    email = normalise_email(email)
    errors = _staff_errors(full_name, role, specialties, known_specialties)
    if problem := _email_problem(email):
        errors["email"] = problem
    if password is not None and (problem := passwords.policy_problem(password, email=email)):
        errors["password"] = problem
    if errors:
        raise InvalidInput(errors)
    password_hash = await passwords.hash_password(password) if password else None
    async with db.transaction():
        if await get_user_by_email(email) is not None:
            raise InvalidInput({"email": "An account with this email already exists."})
        user = User(
            email=email,
            full_name=full_name.strip(),
            role=role,
            bio=bio.strip(),
            password_hash=password_hash,
            email_verified_at=clock.now() if password else None,
        )
        await User.insert(user)
        await _set_specialties(user, specialties if role == "doctor" else [])
        if password is None:
            token = await _issue_token(user, STAFF_INVITE)
            await notifications.enqueue(
                to=email, template="staff_invite", context={"link": _link(f"/reset/{token}")}
            )
        await audit.record(
            "account.create",
            actor=by,
            subject_uid=str(user.uid),
            ip=ip,
            details={"role": role, "specialties": sorted(specialties)},
        )
    return user


async def update_staff(
    target: User,
    *,
    full_name: str,
    role: str,
    specialties: list[str],
    known_specialties: set[str],
    bio: str,
    by: User,
    ip: str | None,
) -> None:
    if target.role not in STAFF_ROLES:
        raise InvalidInput({"role": "Only staff accounts are managed here."})
    errors = _staff_errors(full_name, role, specialties, known_specialties)
    if target.id == by.id and role != target.role:
        errors["role"] = "You cannot change your own role."
    if errors:
        raise InvalidInput(errors)
    async with db.transaction():
        values: dict = {User.full_name: full_name.strip(), User.bio: bio.strip(), User.role: role}
        if role != target.role:
            values[User.session_epoch] = User.session_epoch + 1  # privilege change: sign out
        await User.update(values).where(User.id == target.id)
        old_specialties = await doctor_specialties(target)
        new_specialties = sorted(set(specialties)) if role == "doctor" else []
        await _set_specialties(target, new_specialties)
        if role != target.role:
            await audit.record(
                "role.change",
                actor=by,
                subject_uid=str(target.uid),
                ip=ip,
                details={"from": target.role, "to": role},
            )
        if old_specialties != new_specialties:
            await audit.record(
                "account.specialties",
                actor=by,
                subject_uid=str(target.uid),
                ip=ip,
                details={"from": old_specialties, "to": new_specialties},
            )


async def set_active(target: User, active: bool, *, by: User, ip: str | None) -> None:
    """Disable (ending every session at once) or re-enable an account."""
    if target.id == by.id:
        raise InvalidInput({"account": "You cannot disable your own account."})
    async with db.transaction():
        await User.update(
            {User.is_active: active, User.session_epoch: User.session_epoch + 1}
        ).where(User.id == target.id)
        await audit.record(
            "account.enable" if active else "account.disable",
            actor=by,
            subject_uid=str(target.uid),
            ip=ip,
        )


async def count_admins() -> int:
    return await User.count().where((User.role == ADMIN) & User.is_active.eq(True))


async def active_coordinators() -> list[User]:
    """The coordinators to tell of a case (assignment's messages, cases' escalation)."""
    return await User.objects().where((User.role == COORDINATOR) & User.is_active.eq(True))


async def doctors() -> list[dict]:
    """Every doctor's uid, id and name, by name (staff filters): one query."""
    return (
        await User.select(User.id, User.uid, User.full_name)
        .where(User.role == DOCTOR)
        .order_by(User.full_name)
    )

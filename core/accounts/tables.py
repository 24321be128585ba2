from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class User(Table, tablename="account_user"):
    uid = UUID(unique=True, index=True)  # the only id that appears in URLs
    email = Varchar(length=320, unique=True, index=True)  # normalised: trimmed, lower case
    password_hash = Text(null=True, default=None)  # None until an invited staff member sets one
    role = Varchar(length=20, index=True)
    full_name = Varchar(length=200)
    phone = Varchar(length=40, default="")
    country = Varchar(length=2, default="")  # ISO 3166-1 alpha-2; the fee depends on it
    bio = Text(default="")  # doctors: shown to patients choosing a preferred doctor
    is_active = Boolean(default=True)
    email_verified_at = Timestamptz(null=True, default=None)
    # Bumped to end every session of the user (sign out everywhere, password change, disable).
    session_epoch = Integer(default=0)
    totp_secret = Text(null=True, default=None)  # sealed with a key derived from the secret
    totp_enabled_at = Timestamptz(null=True, default=None)
    totp_last_step = BigInt(null=True, default=None)  # a code's time step is used once only
    created_at = Timestamptz(default=TimestamptzNow())
    last_login_at = Timestamptz(null=True, default=None)


class DoctorSpecialty(Table, tablename="account_doctor_specialty"):
    doctor = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    specialty = Varchar(length=64, index=True)  # a specialty plugin's slug
    # Values of the specialty's declared `subspecialties` this doctor covers.
    subspecialties = JSON(default="[]")
    # The department lead: told when a case of the specialty is overdue (set by admins).
    lead = Boolean(default=False)


class DoctorProfile(Table, tablename="account_doctor_profile"):
    """What routing and reports need to know of a doctor, beyond their account."""

    doctor = ForeignKey(User, on_delete=OnDelete.cascade, unique=True)
    title = Varchar(length=120, default="")  # "Consultant radiologist"
    registration_number = Varchar(length=60, default="")
    registering_body = Varchar(length=120, default="")  # e.g. "Pakistan Medical and Dental Council"
    reviews_children = Boolean(default=True)
    max_active_cases = Integer(default=10)  # offered or accepted, not yet reported


class DoctorAway(Table, tablename="account_doctor_away"):
    """A range of days a doctor is out of office: no case is offered to them then."""

    # Unique by an index the migration makes (SQLite cannot add a UNIQUE column).
    uid = UUID(index=True)
    doctor = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    first_day = Date()
    last_day = Date()  # inclusive


class MessageSettings(Table, tablename="account_message_settings"):
    """How a staff member wants to hear about cases (core/accounts/preferences.py): the hour of
    their daily digest in their time zone, and the kinds of message they take in the digest
    only instead of at once. No row: the defaults (08:00 in the hospital's zone, all at once)."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, unique=True)
    digest_hour = Integer(default=8)  # 0–23, local time
    time_zone = Varchar(length=64, default="")  # "": the hospital's (CONSILIUM_TIME_ZONE)
    digest_only = JSON(default="[]")  # kinds of message (preferences.KINDS) kept for the digest
    last_digest_on = Date(null=True, default=None)  # their local day the last digest went


class RecoveryCode(Table, tablename="account_recovery_code"):
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    code_hash = Varchar(length=64, unique=True)
    used_at = Timestamptz(null=True, default=None)


class AuthToken(Table, tablename="account_token"):
    """Emailed single-use links: verify an email, reset a password, accept a staff invite."""

    purpose = Varchar(length=32)
    token_hash = Varchar(length=64, unique=True)  # sha256 of the token; the token is never stored
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class LoginThrottle(Table, tablename="account_login_throttle"):
    """Failed sign-ins per email (known or not, so the delay reveals nothing)."""

    key = Varchar(length=64, unique=True)  # HMAC of the normalised email
    failures = Integer(default=0)
    blocked_until = Timestamptz(null=True, default=None)


class ResetRequest(Table, tablename="account_reset_request"):
    """A password reset asked for at /reset, for any well-formed address, known or not.

    The request only writes this row, so it costs the same whether the address has an account;
    the outbox worker resolves it (token, email, audit row for a real account) and deletes it.
    """

    email = Varchar(length=320)  # normalised
    ip = Varchar(length=64, null=True, default=None)
    requested_at = Timestamptz(default=TimestamptzNow())

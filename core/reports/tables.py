from piccolo.columns import (
    UUID,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.accounts.tables import User
from core.cases.tables import Case
from core.reviews.tables import SignedReview


class Report(Table, tablename="report_report"):
    """A case's report: its public number, the same for every version (what `/verify` asks
    for, printed on each page). Random, so a number says nothing and cannot be guessed."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.restrict, unique=True)
    number = Varchar(length=20, unique=True, index=True)  # "R-7K3M-9QXD-2HPA"
    created_at = Timestamptz(default=TimestamptzNow())


class ReportVersion(Table, tablename="report_version"):
    """One issued version of a report: the signed review (or addendum, or amendment) it renders,
    and its PDF, signed (PAdES) and sealed like every record. `version` is the signed row's
    sequence; one row per report and version (a unique index), so two corrections at once
    cannot both become the current version. The current version is the highest issued one.

    A version is written `pending` in the transaction that signs, and `issued` once its PDF is
    stored: a failed render loses nothing (the periodic job tries again)."""

    uid = UUID(unique=True, index=True)
    report = ForeignKey(Report, on_delete=OnDelete.restrict, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.restrict, index=True)
    version = Integer()
    kind = Varchar(length=12)  # report | addendum | amended
    review = ForeignKey(SignedReview, on_delete=OnDelete.restrict)
    status = Varchar(length=10, default="pending")  # pending | issued
    # The signed PDF, sealed: where it is and how to open it (as for a Document).
    storage_key = Varchar(length=64, default="")
    file_id = Varchar(length=32, default="")
    key_id = Varchar(length=40, default="")
    wrapped_key = Text(default="")
    size = BigInt(default=0)
    sha256 = Varchar(length=64, default="", index=True)  # of the signed PDF
    attempts = Integer(default=0)
    last_error = Varchar(length=80, default="")  # the error's type, never its message
    created_at = Timestamptz(default=TimestamptzNow())
    issued_at = Timestamptz(null=True, default=None)
    # When the patient was told it is ready (email queued); None while pending or held.
    released_at = Timestamptz(null=True, default=None)


class ReportShare(Table, tablename="report_share"):
    """A link the patient sends their own doctor to read the report (and, when they chose so,
    the records) without an account. Only the token's SHA-256 is stored; an optional 6-digit
    access code is stored as an HMAC under a key derived from the app secret (a plain hash of
    six digits is guessed offline in a moment). Works until it expires, is revoked, or locks
    after too many wrong codes."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    report = ForeignKey(Report, on_delete=OnDelete.cascade)
    created_by = ForeignKey(User, on_delete=OnDelete.restrict)
    token_hash = Varchar(length=64, unique=True)  # sha256 hex of the token
    label = Varchar(length=120)  # the patient's own note: "Dr Aslam, City Hospital"
    include_records = Boolean(default=False)
    code_hash = Varchar(length=64, default="")  # HMAC of the access code; "" when none
    failed_codes = Integer(default=0)
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ShareOpening(Table, tablename="report_share_opening"):
    """One opening through a share: the patient's read receipt."""

    share = ForeignKey(ReportShare, on_delete=OnDelete.cascade, index=True)
    opened_at = Timestamptz(default=TimestamptzNow())
    what = Varchar(length=12)  # report | pdf | document

"""The audit log: one append-only, hash-chained row per security-relevant event."""

from piccolo.columns import Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class AuditEvent(Table, tablename="audit_event"):
    """A row is never updated or deleted (database triggers refuse it).

    `hash` = HMAC-SHA256(audit key, `prev_hash` ‖ canonical JSON of every other column), so
    an altered, removed or reordered row breaks the chain (see `core.audit.service.verify`).
    User ids are plain strings, not foreign keys: the log must outlive the accounts it names.
    """

    seq = Serial(primary_key=True)  # chain position: 1, 2, 3… with no gaps
    at = Timestamptz()  # UTC
    actor_uid = Varchar(length=36, null=True, default=None, index=True)
    actor_role = Varchar(length=20, null=True, default=None)
    action = Varchar(length=64, index=True)  # "login.success", "document.view", …
    object_type = Varchar(length=64, null=True, default=None)
    object_id = Varchar(length=64, null=True, default=None)
    case_id = Varchar(length=64, null=True, default=None, index=True)
    subject_uid = Varchar(length=36, null=True, default=None, index=True)  # whom it concerns
    outcome = Varchar(length=20, default="success")
    ip = Varchar(length=45, null=True, default=None)  # 45: longest textual IPv6 address
    details = Text(default="{}")  # canonical JSON, never PHI
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64, unique=True)

"""The upload limits, read from running totals (`DocumentUsage`) instead of sums over every
document.

A case and an uploading account each have one row: the plaintext bytes of their complete
documents. `charge` adds a document's size to both in the transaction that completes it, in one
statement that also checks the limits, so two uploads finishing together cannot both pass the
last of the room (the row's lock makes the second wait and re-check). `room` reads both rows in
one query before a file streams in, to refuse early what could never fit; an upload of several
files then keeps its `Room` up to date from what each `charge` returned.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.accounts.tables import User
from core.cases.tables import Case
from core.documents.records import NO_ROOM, UploadRefused, too_large
from core.documents.tables import DocumentUsage
from core.settings import Settings

# One statement for both rows: inserted at the first document, else added to while the total
# stays within its limit (the case's or the account's, by which column the row fills in). A row
# over its limit is not updated and not returned: the caller then rolls the transaction back.
_CHARGE = (
    'INSERT INTO document_usage (scope, "case", "user", bytes) VALUES {rows} '
    "ON CONFLICT (scope) DO UPDATE SET bytes = document_usage.bytes + excluded.bytes "
    "WHERE document_usage.bytes + excluded.bytes <= "
    '(CASE WHEN document_usage."user" IS NULL THEN CAST({{}} AS BIGINT) '
    "ELSE CAST({{}} AS BIGINT) END) "
    "RETURNING scope, bytes"
)
_CASE_ROW = "({}, {}, NULL, {})"
_USER_ROW = "({}, NULL, {}, {})"
_REFUND = "UPDATE document_usage SET bytes = bytes - {} WHERE scope IN ({}, {})"


def case_scope(case_id: int) -> str:
    return f"case:{case_id}"


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


@dataclass
class Room:
    """What may still be added to one case by one person: the per-file limit, and what is left
    of the case's and the account's totals (None: the upload counts against no account, as a
    doctor's office sending through a link)."""

    max_file: int
    case_left: int
    user_left: int | None

    @property
    def limit(self) -> int:
        """The largest file that may arrive now."""
        left = min(self.max_file, self.case_left)
        return left if self.user_left is None else min(left, self.user_left)

    def note(
        self, settings: Settings, totals: dict[str, int], case: Case, user: User | None
    ) -> None:
        """Take in the totals a `charge` returned."""
        if (held := totals.get(case_scope(case.id))) is not None:
            self.case_left = settings.max_case_bytes - held
        if user is not None and (held := totals.get(user_scope(user.id))) is not None:
            self.user_left = settings.max_user_bytes - held

    def refusal(self) -> UploadRefused:
        limit = self.limit
        return UploadRefused(status=413, message=NO_ROOM) if limit <= 0 else too_large(limit)


async def room(
    settings: Settings,
    case: Case,
    user: User | None,
    *,
    pending_case: int = 0,
    pending_user: int = 0,
) -> Room:
    """The room left now, less `pending` bytes promised to unfinished uploads. One query."""
    scopes = [case_scope(case.id)] + ([user_scope(user.id)] if user is not None else [])
    rows = await DocumentUsage.select(DocumentUsage.scope, DocumentUsage.bytes).where(
        DocumentUsage.scope.is_in(scopes)
    )
    held = {row["scope"]: int(row["bytes"]) for row in rows}
    user_left = None
    if user is not None:
        user_left = settings.max_user_bytes - held.get(user_scope(user.id), 0) - pending_user
    return Room(
        max_file=settings.max_file_bytes,
        case_left=settings.max_case_bytes - held.get(case_scope(case.id), 0) - pending_case,
        user_left=user_left,
    )


async def charge(
    settings: Settings, case_id: int, user_id: int | None, size: int
) -> dict[str, int] | None:
    """Add `size` bytes to the case's and the account's totals; call it in the transaction that
    completes the document. Returns the new totals by scope, or None when a limit would be
    passed: then the caller must roll its transaction back (one of the rows may have been
    added to)."""
    rows, values = [_CASE_ROW], [case_scope(case_id), case_id, size]
    if user_id is not None:
        rows.append(_USER_ROW)
        values += [user_scope(user_id), user_id, size]
    sql = _CHARGE.format(rows=", ".join(rows))
    got = await DocumentUsage.raw(sql, *values, settings.max_case_bytes, settings.max_user_bytes)
    totals = {row["scope"]: int(row["bytes"]) for row in got}
    return totals if len(totals) == len(rows) else None


async def refund(case_id: int, user_id: int | None, size: int) -> None:
    """Take `size` bytes off both totals (documents removed: the entries of a ZIP that could not
    be unpacked after all)."""
    if size:
        other = user_scope(user_id) if user_id is not None else case_scope(case_id)
        await DocumentUsage.raw(_REFUND, size, case_scope(case_id), other)

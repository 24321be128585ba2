"""Who may read a case's records and add to them, and the audited reads ("who opened my
records")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.accounts.tables import User
from core.audit import service as audit
from core.cases import readers
from core.cases.service import accepts_records
from core.cases.tables import Case
from core.documents.listing import facts_of
from core.documents.records import COMPLETE, DocumentNotFound
from core.documents.tables import Document
from core.ids import parse_uuid
from core.roles import ADMIN, COORDINATOR, DOCTOR, PATIENT


async def may_read(user: User, case: Case) -> bool:
    """The owning patient, coordinators and admins, the doctor the case is assigned to now (a
    reassigned doctor loses access at once), and a doctor with an open read-only grant (a
    colleague asked for an opinion, until the review is signed)."""
    if user.role == PATIENT:
        return case.patient == user.id
    if user.role in (COORDINATOR, ADMIN):
        return True
    if user.role == DOCTOR:
        return case.assigned_doctor == user.id or await readers.is_reader(case, user)
    return False


def may_add_records(user: User, case: Case) -> bool:
    """Only the owning patient adds records themselves (staff read them; doctors send theirs
    through an upload link), and only while the case still accepts records."""
    return user.role == PATIENT and case.patient == user.id and accepts_records(case)


async def get_document(case: Case, uid: str) -> Document:
    parsed = parse_uuid(uid)
    if parsed is None:
        raise DocumentNotFound
    doc = (
        await Document.objects()
        .where(
            (Document.uid == parsed) & (Document.case == case.id) & (Document.status == COMPLETE)
        )
        .first()
    )
    if doc is None:
        raise DocumentNotFound
    return doc


async def record_access(
    user: User,
    case: Case,
    doc: Document,
    action: str,
    *,
    ip: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    await audit.record_about(
        f"document.{action}", doc, case=case, actor=user, ip=ip, details=details
    )


# A whole study's download is one row about its lead file, with the count in its details.
STUDY_DOWNLOAD = "document.download_study"
# The report's readings are the case's too (core/reports writes them under these names).
REPORT_READS = {"report.view": "viewed", "report.download": "downloaded"}
# An opening through a link the patient shared with their own doctor (core/reports/sharing).
SHARED_OPEN = "report_share.open"
SHARED_WORDS = {
    "report": "viewed your report",
    "pdf": "downloaded your report",
    "document": "downloaded",
}
READ_ACTIONS = (
    "document.download",
    "document.view",
    "document.preview",
    STUDY_DOWNLOAD,
    *REPORT_READS,
    SHARED_OPEN,
)


@dataclass
class AccessLine:
    at: datetime
    who: str
    action: str
    document: str


async def record_accesses(case: Case, viewer: User) -> list[AccessLine]:
    """Every read of this case's records, newest first, for the patient's own page: staff by
    name and role, the patient as "You"."""
    from core.audit.tables import AuditEvent

    rows = (
        await AuditEvent.objects()
        .where((AuditEvent.case_id == str(case.uid)) & AuditEvent.action.is_in(list(READ_ACTIONS)))
        .order_by(AuditEvent.seq, ascending=False)
    )
    uids = {row.actor_uid for row in rows if row.actor_uid}
    people = {
        str(user.uid): user
        for user in (
            await User.objects().where(User.uid.is_in([parse_uuid(u) for u in uids]))
            if uids
            else []
        )
    }
    docs = await Document.objects().where(Document.case == case.id)
    names = {str(doc.uid): doc.display_name for doc in docs}
    studies = {str(doc.uid): facts_of(doc).get("group_label") or "imaging study" for doc in docs}
    lines = []
    for row in rows:
        person = people.get(row.actor_uid or "")
        if person is None:
            who = "Unknown"
        elif person.id == viewer.id:
            who = "You"
        else:
            who = f"{person.full_name} ({person.role})"
        if row.action == SHARED_OPEN:
            details = _details(row.details)
            what = details.get("what", "")
            file = (
                names.get(str(details.get("document", "")), "a file") if what == "document" else ""
            )
            verb = SHARED_WORDS.get(str(what), "opened your report")
            lines.append(AccessLine(row.at, "Through a link you shared", verb, file))
            continue
        if row.action in REPORT_READS:
            version = _details(row.details).get("version")
            what = f"(version {version})" if isinstance(version, int) else ""
            lines.append(AccessLine(row.at, who, f"{REPORT_READS[row.action]} your report", what))
            continue
        if row.action == STUDY_DOWNLOAD:
            files = _details(row.details).get("files")
            study = studies.get(row.object_id or "", "imaging study")
            what = f"({study}, {files} files)" if isinstance(files, int) else f"({study})"
            lines.append(AccessLine(row.at, who, "downloaded the whole study", what))
            continue
        # A preview is the person looking at the file in the browser: "viewed" to the patient.
        verb = "downloaded" if row.action == "document.download" else "viewed"
        lines.append(AccessLine(row.at, who, verb, names.get(row.object_id or "", "a file")))
    return lines


def _details(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

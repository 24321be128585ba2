"""A case's records as pages list them: lines (a study's files together), notes for the
patient, what a plugin says for staff, what a ZIP left out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.accounts.tables import User
from core.cases.tables import Case
from core.documents.content import (
    PREVIEW_MEDIA_TYPES,
)
from core.documents.records import COMPLETE, EXPANDED
from core.documents.tables import Document
from core.plugins import PluginHost
from core.roles import ADMIN, COORDINATOR, DOCTOR
from core.specialty import RecordsDetail


async def documents_of(case: Case) -> list[Document]:
    return (
        await Document.objects()
        .where((Document.case == case.id) & (Document.status == COMPLETE))
        .order_by(Document.created_at)
    )


@dataclass
class RecordLine:
    """One line of the case's record list: a single file, or a group (an imaging study)."""

    label: str
    documents: list[Document]
    checklist_item: str | None


def record_lines(docs: list[Document]) -> list[RecordLine]:
    """Files a plugin put in one group (facts "group"/"group_label") become one line:
    "CT chest, 2 Oct 2026, 312 images" instead of 312 file names."""
    lines: list[RecordLine] = []
    groups: dict[str, RecordLine] = {}
    for doc in docs:
        facts = facts_of(doc)
        group = facts.get("group")
        if not group:
            lines.append(RecordLine(doc.display_name, [doc], doc.checklist_item))
            continue
        if group not in groups:
            groups[group] = RecordLine(facts.get("group_label") or "Study", [], doc.checklist_item)
            lines.append(groups[group])
        groups[group].documents.append(doc)
    for line in groups.values():
        count = len(line.documents)
        line.label = f"{line.label}, {count:,} image{'s' if count != 1 else ''}"
    return lines


def facts_of(doc: Document) -> dict[str, str]:
    """What a plugin found in the file (`consilium_inspect_document`), as stored."""
    return json.loads(doc.facts or "{}") if isinstance(doc.facts, str) else (doc.facts or {})


def record_notes(doc: Document) -> list[str]:
    """The plugin's sentence about a file for whoever sees it (`facts["note"]`), if any."""
    note = facts_of(doc).get("note")
    return [note] if note else []


def describe_line(
    plugins: PluginHost, case: Case, line: RecordLine, viewer: User | None
) -> RecordsDetail | None:
    """What the case's specialty plugin tells staff about one record line (e.g. the series of an
    imaging study and who its headers name); None for patients."""
    specialty = plugins.specialty(case.specialty)
    if viewer is None or viewer.role not in (COORDINATOR, ADMIN, DOCTOR) or specialty is None:
        return None
    described = plugins.describe_records(specialty, [facts_of(doc) for doc in line.documents])
    # What core and the plugin flagged on each file when it arrived (a cleared DICOM preamble,
    # "could not be read automatically", files left out of a ZIP) is for staff to check.
    flags = tuple(dict.fromkeys(flag for doc in line.documents for flag in flags_of(doc)))
    if not flags:
        return described
    return RecordsDetail(
        lines=described.lines if described else (),
        warnings=(*(described.warnings if described else ()), *flags),
    )


def flags_of(doc: Document) -> list[str]:
    try:
        value = json.loads(doc.flags or "[]")
    except ValueError:
        return []
    return [str(flag) for flag in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class LeftOut:
    """A file inside an uploaded ZIP that was not kept, and why (plain words)."""

    name: str
    reason: str


@dataclass
class ArchiveOutcome:
    """What became of one uploaded ZIP: how many of its files were kept, which were not."""

    name: str
    added_at: datetime
    kept: int
    left_out: list[LeftOut]


def archive_outcome(doc: Document) -> ArchiveOutcome:
    facts = json.loads(doc.facts or "{}") if isinstance(doc.facts, str) else (doc.facts or {})
    left_out = [LeftOut(str(item[0]), str(item[1])) for item in facts.get("left_out", [])]
    return ArchiveOutcome(doc.display_name, doc.created_at, int(facts.get("kept", 0)), left_out)


@dataclass
class UploadResult:
    """What one upload (one form, however many files) left on the case."""

    files: int  # files kept; a ZIP counts the files unpacked from it
    left_out: list[LeftOut]


def upload_result(docs: Sequence[Document]) -> UploadResult:
    files, left_out = 0, []
    for doc in docs:
        if doc.kind == "zip":
            outcome = archive_outcome(doc)
            files += outcome.kept
            left_out += outcome.left_out
        else:
            files += 1
    return UploadResult(files, left_out)


async def archives_with_left_out(case: Case) -> list[ArchiveOutcome]:
    """The case's ZIPs from which some files were not kept, oldest first (the case page)."""
    archives = (
        await Document.objects()
        .where((Document.case == case.id) & (Document.status == EXPANDED))
        .order_by(Document.created_at)
    )
    return [outcome for doc in archives if (outcome := archive_outcome(doc)).left_out]


def previewable(doc: Document) -> bool:
    """Whether the browser may show this record in our page. Decided by the type sniffed at
    upload, never by the file's name."""
    return doc.media_type in PREVIEW_MEDIA_TYPES

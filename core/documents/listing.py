"""A case's records as pages list them: lines (a study's files together), notes for the
patient, what a plugin says for staff, what a ZIP left out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.accounts.tables import User
from core.cases.tables import Case
from core.documents.content import (
    PREVIEW_MEDIA_TYPES,
)
from core.documents.records import COMPLETE, EXPANDED
from core.documents.tables import Document
from core.ids import parse_uuid
from core.plugins import PluginHost
from core.roles import ADMIN, COORDINATOR, DOCTOR
from core.specialty import RecordsDetail

# A group's line lists its first files and counts the rest: a study of a thousand images is one
# line, not a thousand links.
FILES_LISTED = 50


@dataclass
class RecordLine:
    """One line of the case's record list: a single file, or a group (an imaging study)."""

    label: str
    documents: list[Document]
    checklist_item: str | None

    @property
    def listed(self) -> list[Document]:
        """The files named under the line (a group's first FILES_LISTED)."""
        return self.documents[:FILES_LISTED]

    @property
    def more(self) -> int:
        """How many of the line's files are counted but not named."""
        return len(self.documents) - len(self.listed)


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


# The records of a case, a page of lines at a time. A line is a file, or a group of files a
# plugin put together, led by the group's first file. A page is the lines after (or before) a
# lead's id, in the order the files were stored, found through the index on (case, group_key,
# id); `lines_led_by` then reads the files of the page's groups in one more query.

_LEADS = (
    "SELECT d.id FROM document_document d WHERE d.\"case\" = {} AND d.status = 'complete' "
    "AND (d.group_key IS NULL OR d.id = (SELECT MIN(e.id) FROM document_document e "
    'WHERE e."case" = d."case" AND e.group_key = d.group_key AND e.status = \'complete\'))'
)


def lead_key(doc: Document) -> tuple[int]:
    """A line's place in the case's record list: the id of the file that leads it."""
    return (doc.id,)


async def lead_documents(
    case: Case,
    *,
    limit: int,
    after: tuple[int] | None = None,
    before: tuple[int] | None = None,
) -> list[Document]:
    """The files that lead the case's record lines, in the order they were stored: the first
    `limit` after the lead `after`, or the last `limit` before the lead `before`. Two queries."""
    sql, values = _LEADS, [case.id]
    if after is not None:
        sql, values = sql + " AND d.id > {}", [*values, after[0]]
    if before is not None:
        sql, values = sql + " AND d.id < {}", [*values, before[0]]
    sql += f" ORDER BY d.id {'DESC' if before is not None else 'ASC'} LIMIT {int(limit)}"
    ids = [row["id"] for row in await Document.raw(sql, *values)]
    if not ids:
        return []
    return list(await Document.objects().where(Document.id.is_in(ids)).order_by(Document.id))


async def lines_led_by(case: Case, leads: Sequence[Document]) -> list[RecordLine]:
    """The record lines these files lead, each group with all its files (one query)."""
    keys = list(dict.fromkeys(doc.group_key for doc in leads if doc.group_key))
    members: dict[str, list[Document]] = {}
    if keys:
        rows = (
            await Document.objects()
            .where(
                (Document.case == case.id)
                & (Document.status == COMPLETE)
                & Document.group_key.is_in(keys)
            )
            .order_by(Document.id)
        )
        for doc in rows:
            members.setdefault(doc.group_key, []).append(doc)
    return record_lines([doc for lead in leads for doc in members.get(lead.group_key, [lead])])


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
    """What became of one uploaded ZIP: how many of its files were kept, which were not, and
    how many the case held already."""

    name: str
    added_at: datetime
    kept: int
    left_out: list[LeftOut]
    already: int = 0


def archive_outcome(doc: Document) -> ArchiveOutcome:
    facts = json.loads(doc.facts or "{}") if isinstance(doc.facts, str) else (doc.facts or {})
    left_out = [LeftOut(str(item[0]), str(item[1])) for item in facts.get("left_out", [])]
    kept, already = int(facts.get("kept", 0)), int(facts.get("already", 0))
    return ArchiveOutcome(doc.display_name, doc.created_at, kept, left_out, already)


@dataclass(frozen=True)
class RefusedGroup:
    """Files not stored for one reason (a CD's viewer program is many files of one kind)."""

    reason: str
    names: list[str]


@dataclass
class UploadResult:
    """What one upload (one form or several batches, however many files) left on the case."""

    files: int  # files kept; a ZIP counts the files unpacked from it
    left_out: list[LeftOut]  # files inside ZIPs that were not kept
    already: int = 0  # files whose content the case held already: not stored twice
    refused: list[LeftOut] = field(default_factory=list)  # files not stored, and why
    stopped: str = ""  # why the rest of the upload was not read, and what to do
    system: int = 0  # system files of a folder (.DS_Store, Thumbs.db…), left out unread

    @property
    def refused_by_reason(self) -> list[RefusedGroup]:
        groups: dict[str, list[str]] = {}
        for item in self.refused:
            groups.setdefault(item.reason, []).append(item.name)
        return [RefusedGroup(reason, names) for reason, names in groups.items()]

    @property
    def complete(self) -> bool:
        """Every file is in the case, and nothing needs saying beyond how many."""
        return not (self.left_out or self.already or self.refused or self.stopped)


def upload_result(
    docs: Sequence[Document],
    *,
    already: int = 0,
    refused: Sequence[LeftOut] = (),
    stopped: str = "",
    system: int = 0,
) -> UploadResult:
    """The result of an upload from the documents it stored (a ZIP's unpacked entries
    counted), the files the case had already, and those it refused."""
    files, left_out = 0, []
    for doc in docs:
        if doc.kind == "zip":
            outcome = archive_outcome(doc)
            files += outcome.kept
            left_out += outcome.left_out
            already += outcome.already
        else:
            files += 1
    return UploadResult(files, left_out, already, list(refused), stopped, system)


async def documents_named(
    case: Case, uids: Sequence[str], *, provider_link_id: int | None = None
) -> list[Document]:
    """The documents of this case (stored through this link, if given) among `uids`: those an
    upload's earlier batches stored, named by its last one so that its answer sums up all."""
    parsed = [uid for text in dict.fromkeys(uids) if (uid := parse_uuid(text)) is not None]
    if not parsed:
        return []
    where = (
        (Document.case == case.id)
        & Document.uid.is_in(parsed)
        & Document.status.is_in([COMPLETE, EXPANDED])
    )
    if provider_link_id is not None:
        where &= Document.provider_link == provider_link_id
    return await Document.objects().where(where)


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

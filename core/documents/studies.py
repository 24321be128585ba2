"""A whole imaging study as one ZIP, for the radiologist: streamed, never held whole.

A study is the complete DICOM files of a case that the radiology plugin put in one group (the
"group" fact, the StudyInstanceUID). Entries are named from numbers we parsed, never from the
uploader's file names: `S{series:03d}-{modality}/{instance:05d}.dcm`, a position standing in for
a number a file does not have. Entries are stored, not deflated (DICOM pixel data is mostly
compressed already), and ZIP64 throughout, so a study over 4 GB is one valid archive.

A stored entry's local header needs its CRC-32 before its bytes (a data descriptor after a
stored entry is something streaming readers refuse), and the store keeps only a SHA-256: a small
file is read once and held while it is sent, a large one is read twice (CRC, then send). Either
way the SHA-256 is checked before the entry starts, so a damaged file cuts the download off
instead of ending up in the ZIP.
"""

from __future__ import annotations

import re
import stat
import zlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass

from stream_zip import NO_COMPRESSION_64, AsyncMemberFile, async_stream_zip

from core.cases.tables import Case
from core.documents.listing import facts_of
from core.documents.reading import plaintext
from core.documents.records import COMPLETE, Records
from core.documents.tables import Document

STUDY_KIND = "dicom"
# Files up to this size are held while sent (one read); larger ones are read twice instead. A
# CT or MR image is well under a megabyte, a radiograph tens of megabytes.
HELD_BYTES = 16 * 1024 * 1024
ENTRY_MODE = stat.S_IFREG | 0o600
_NUMBER = re.compile(r"\d{1,9}")
_NOT_MODALITY = re.compile(r"[^A-Z0-9]")
UNKNOWN_MODALITY = "OT"  # DICOM's own code for "other"


@dataclass(frozen=True)
class StudyEntry:
    name: str  # the path inside the ZIP
    document: Document


@dataclass(frozen=True)
class Study:
    """The complete files of one imaging study of a case, in reading order."""

    lead: Document  # the study's first stored file: the record line's, and the audit row's
    number: int  # 1 for the case's first study (in the order studies were stored), 2…
    entries: list[StudyEntry]

    @property
    def documents(self) -> list[Document]:
        return [entry.document for entry in self.entries]


def study_group(doc: Document) -> str | None:
    """The study a DICOM file belongs to (its "group" fact), or None."""
    if doc.kind != STUDY_KIND:
        return None
    group = facts_of(doc).get("group")
    return str(group) if group else None


async def study_of(case: Case, doc: Document) -> Study | None:
    """The study `doc` belongs to: every complete DICOM file of this case with the same "group"
    fact, ordered by series number, then instance number. None when `doc` is not in a study."""
    group = study_group(doc)
    if group is None or doc.case != case.id or doc.status != COMPLETE:
        return None
    rows = (
        await Document.objects()
        .where(
            (Document.case == case.id)
            & (Document.status == COMPLETE)
            & (Document.kind == STUDY_KIND)
            # The indexed column holds the fact cut to 100 characters: the fact decides.
            & (Document.group_key == group[:100])
        )
        .order_by(Document.id)
    )
    members = [row for row in rows if study_group(row) == group]
    if not members:
        return None
    lead = members[0]
    return Study(lead=lead, number=await _study_number(case, lead), entries=entry_names(members))


async def _study_number(case: Case, lead: Document) -> int:
    """1 + the studies of the case whose first file was stored before this one's."""
    rows = await Document.raw(
        'SELECT COUNT(DISTINCT group_key) AS n FROM document_document WHERE "case" = {} '
        "AND status = {} AND kind = {} AND group_key IS NOT NULL AND id < {}",
        case.id,
        COMPLETE,
        STUDY_KIND,
        lead.id,
    )
    return 1 + int(rows[0]["n"])


def entry_names(docs: Sequence[Document]) -> list[StudyEntry]:
    """Each file's path in the ZIP, in reading order: series by number (files without one
    last, in the order stored), each series' files by instance number. Names are built from
    parsed numbers and a modality reduced to A-Z and 0-9, so no header can make a path; a name
    that two files would share gets "-2", "-3"…"""
    series: dict[str, list[Document]] = {}
    for doc in docs:
        facts = facts_of(doc)
        key = facts.get("series_uid") or f"#{facts.get('series_number', '')}"
        series.setdefault(key, []).append(doc)
    ordered = sorted(series.values(), key=lambda files: _order(files[0], "series_number"))
    entries: list[StudyEntry] = []
    folders: set[str] = set()
    for position, files in enumerate(ordered, start=1):
        first = facts_of(files[0])
        number = _number(first.get("series_number"))
        folder = _unique(
            f"S{position if number is None else number:03d}-{_modality(first.get('modality'))}",
            folders,
        )
        names: set[str] = set()
        for index, doc in enumerate(sorted(files, key=lambda d: _order(d, "instance_number")), 1):
            instance = _number(facts_of(doc).get("instance_number"))
            stem = _unique(f"{index if instance is None else instance:05d}", names)
            entries.append(StudyEntry(f"{folder}/{stem}.dcm", doc))
    return entries


def _order(doc: Document, fact: str) -> tuple[bool, int, int]:
    number = _number(facts_of(doc).get(fact))
    return (number is None, number or 0, doc.id)


def _number(value: object) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if _NUMBER.fullmatch(text) else None


def _modality(value: object) -> str:
    return _NOT_MODALITY.sub("", str(value or "").upper())[:16] or UNKNOWN_MODALITY


def _unique(name: str, taken: set[str]) -> str:
    candidate, suffix = name, 1
    while candidate in taken:
        suffix += 1
        candidate = f"{name}-{suffix}"
    taken.add(candidate)
    return candidate


def study_zip(records: Records, study: Study) -> AsyncIterable[bytes]:
    """The study as a ZIP, produced as it is sent: at most one file of HELD_BYTES in memory."""
    return async_stream_zip(_members(records, study))


async def _members(records: Records, study: Study) -> AsyncIterator[AsyncMemberFile]:
    for entry in study.entries:
        doc = entry.document
        size, crc, chunks = await _stored_entry(records, doc)
        yield entry.name, doc.created_at, ENTRY_MODE, NO_COMPRESSION_64(size, crc), chunks


async def _stored_entry(records: Records, doc: Document) -> tuple[int, int, AsyncIterable[bytes]]:
    """Size, CRC-32 and the bytes of one entry. `plaintext` checks the SHA-256 at its end, so
    the first read has verified the file before its header is sent."""
    size, crc, held = 0, 0, []
    async for piece in plaintext(records, doc):
        size += len(piece)
        crc = zlib.crc32(piece, crc)
        if doc.size <= HELD_BYTES:
            held.append(piece)
    if doc.size <= HELD_BYTES:
        return size, crc, _replay(held)
    # Read again to send it; stream-zip refuses bytes that do not match this size and CRC.
    return size, crc, plaintext(records, doc)


async def _replay(pieces: list[bytes]) -> AsyncIterator[bytes]:
    held = deque(pieces)
    pieces.clear()
    while held:  # each piece let go once sent
        yield held.popleft()

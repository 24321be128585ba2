"""Medical records: sealed as they stream in, read back only by who may, every read audited.

An upload is sniffed from its first bytes, sealed segment by segment with a fresh data key and
written to the object store; the database row says `complete` only after the store committed.
Nothing is buffered whole and no plaintext touches a disk.

This module is the domain's public surface; the rules live in its modules: records (the store
and its refusals), access (who may read or add, audited reads), ingest (storing an upload),
reading (streaming a record back), listing (what pages show) and studies (a whole imaging
study as one streamed ZIP).
"""

from __future__ import annotations

from core.documents.access import (
    READ_ACTIONS,
    STUDY_DOWNLOAD,
    AccessLine,
    get_document,
    may_add_records,
    may_read,
    record_access,
    record_accesses,
)
from core.documents.ingest import (
    Stored,
    inspect,
    room_for,
    store_file,
    store_upload,
    upload_room,
)
from core.documents.listing import (
    ArchiveOutcome,
    LeftOut,
    RecordLine,
    RefusedGroup,
    UploadResult,
    archive_outcome,
    archives_with_left_out,
    describe_line,
    documents_named,
    facts_of,
    lead_documents,
    lead_key,
    lines_led_by,
    previewable,
    record_lines,
    record_notes,
    upload_result,
)
from core.documents.reading import (
    data_key_of,
    plaintext,
    sync_reader,
)
from core.documents.records import (
    COMPLETE,
    EXPANDED,
    NO_ROOM,
    READ_CHUNK,
    UPLOADING,
    DocumentNotFound,
    Records,
    UploadRefused,
    too_large,
)
from core.documents.studies import (
    Study,
    StudyEntry,
    study_group,
    study_of,
    study_zip,
)
from core.documents.usage import Room

__all__ = [
    "COMPLETE",
    "EXPANDED",
    "NO_ROOM",
    "READ_ACTIONS",
    "READ_CHUNK",
    "STUDY_DOWNLOAD",
    "UPLOADING",
    "AccessLine",
    "ArchiveOutcome",
    "DocumentNotFound",
    "LeftOut",
    "RecordLine",
    "Records",
    "RefusedGroup",
    "Room",
    "Stored",
    "Study",
    "StudyEntry",
    "UploadRefused",
    "UploadResult",
    "archive_outcome",
    "archives_with_left_out",
    "data_key_of",
    "describe_line",
    "documents_named",
    "facts_of",
    "get_document",
    "inspect",
    "lead_documents",
    "lead_key",
    "lines_led_by",
    "may_add_records",
    "may_read",
    "plaintext",
    "previewable",
    "record_access",
    "record_accesses",
    "record_lines",
    "record_notes",
    "room_for",
    "store_file",
    "store_upload",
    "study_group",
    "study_of",
    "study_zip",
    "sync_reader",
    "too_large",
    "upload_result",
    "upload_room",
]

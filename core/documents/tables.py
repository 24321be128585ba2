from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
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


class ProviderLink(Table, tablename="document_provider_link"):
    """A secure, expiring upload link a patient sends to their own doctor or hospital."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    created_by = ForeignKey(User, on_delete=OnDelete.restrict)
    token_hash = Varchar(length=64, unique=True)  # sha256 of the token; the token is never stored
    note = Varchar(length=300, default="")  # for the patient's own list ("Dr Aslam, City Hospital")
    expires_at = Timestamptz()
    max_uses = Integer(default=5)
    uses = Integer(default=0)
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class Document(Table, tablename="document_document"):
    """One uploaded file, sealed at rest. The row is written once, `complete` (or `expanded`, a
    ZIP whose entries became documents), after the bytes are durably stored and read by the
    plugin: what it found is written with the row. The wrapped data key lives here, never
    beside the file."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    parent = ForeignKey("self", on_delete=OnDelete.cascade, null=True, default=None)  # a ZIP
    storage_key = Varchar(length=64, unique=True)  # random; says nothing about the content
    display_name = Varchar(length=200)  # sanitised, for display only
    media_type = Varchar(length=60, default="")
    kind = Varchar(length=12, default="")  # pdf | image | dicom | zip
    status = Varchar(
        length=12, default="uploading", index=True
    )  # complete | expanded (older rows: uploading)
    size = BigInt(default=0)  # plaintext bytes
    sha256 = Varchar(length=64, default="")  # of the plaintext, checked on every full read
    segment_size = Integer(default=0)
    file_id = Varchar(length=32, default="")  # hex; bound into the header and the key wrapping
    key_id = Varchar(length=40, default="")  # master key that wraps the data key
    wrapped_key = Text(default="")  # base64
    checklist_item = Varchar(length=40, null=True, default=None)
    source = Varchar(length=12, default="patient")  # patient | provider
    uploaded_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    provider_link = ForeignKey(ProviderLink, on_delete=OnDelete.set_null, null=True, default=None)
    flags = JSON(default="[]")  # e.g. ["malformed_dicom", "preamble_zeroed"]
    facts = JSON(default="{}")  # what a plugin read from the file (DICOM tags)
    created_at = Timestamptz(default=TimestamptzNow())
    completed_at = Timestamptz(null=True, default=None)
    # "<case id>:<sha256>": a case holds the same content once; a file sent again (a retried
    # upload, the same folder twice) is recognised and not stored twice. Unique by an index the
    # migration makes (SQLite cannot add a UNIQUE column); None for rows from before it that
    # repeat an earlier row's content.
    content_key = Varchar(length=100, null=True, default=None)
    # The group a plugin put the file in (facts["group"], e.g. an imaging study's UID): the
    # case's record list shows a group as one line, found through an index on (case, group_key,
    # id) that the migration makes.
    group_key = Varchar(length=100, null=True, default=None)


class DocumentUsage(Table, tablename="document_usage"):
    """Record bytes held, kept up to date in the transaction that completes each document: one
    row per case ("case:<id>") and per uploading account ("user:<id>"), so the upload limits
    read one row each instead of summing every document."""

    scope = Varchar(length=40, unique=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, null=True, default=None)
    user = ForeignKey(User, on_delete=OnDelete.cascade, null=True, default=None)
    bytes = BigInt(default=0)  # plaintext bytes of the complete documents counted here


class UploadSession(Table, tablename="document_upload_session"):
    """A resumable upload in progress: the file arrives in fixed-size chunks, each sealed as
    it streams in and stored as its own part object (`<part_prefix>-<n>`); a dropped connection
    costs at most the chunk in flight. When the last chunk is in, the parts are read back in
    order, opened, and stored as one document through the ordinary upload path."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    uploaded_by = ForeignKey(User, on_delete=OnDelete.cascade, null=True, default=None)
    source = Varchar(length=12, default="patient")  # patient | provider
    provider_link = ForeignKey(ProviderLink, on_delete=OnDelete.set_null, null=True, default=None)
    filename = Varchar(length=200)  # sanitised, for display only
    size = BigInt()  # declared plaintext bytes; every chunk's length follows from it
    chunk_size = Integer()
    chunks_done = Integer(default=0)  # chunks 0..chunks_done-1 are durably stored
    checklist_item = Varchar(length=40, null=True, default=None)
    part_prefix = Varchar(length=32, unique=True)  # random
    file_id = Varchar(length=32)  # hex; each part's file id is derived from it and its number
    key_id = Varchar(length=40)
    wrapped_key = Text()  # base64; one data key for the parts of this upload only
    status = Varchar(length=12, default="open", index=True)  # open | assembling | done | failed
    message = Varchar(length=300, default="")  # why it failed, for the person
    document = ForeignKey(Document, on_delete=OnDelete.set_null, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow(), index=True)

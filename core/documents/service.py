"""Medical records: sealed as they stream in, read back only by who may, every read audited.

An upload is sniffed from its first bytes, sealed segment by segment with a fresh data key and
written to the object store; the database row says `complete` only after the store committed.
Nothing is buffered whole and no plaintext touches a disk.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from core import db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import service as cases
from core.cases.states import SUBMITTED, accepts_records
from core.cases.tables import Case
from core.documents.archive import ArchiveError, iter_zip
from core.documents.archive import Limits as ZipLimits
from core.documents.content import (
    HEAD_BYTES,
    PREVIEW_MEDIA_TYPES,
    display_name,
    neutralise_dicom_preamble,
    sniff,
)
from core.documents.keyring import Keyring
from core.documents.sealing import (
    DEFAULT_SEGMENT_SIZE,
    IntegrityError,
    Opener,
    SealedReader,
    Sealer,
    new_data_key,
    new_file_id,
)
from core.documents.storage import LocalStore, ObjectStore, S3Store
from core.documents.tables import Document
from core.plugins import PluginHost
from core.security import ADMIN, COORDINATOR, DOCTOR, PATIENT
from core.settings import Settings
from core.specialty import RecordsDetail, Specialty

COMPLETE, UPLOADING, EXPANDED = "complete", "uploading", "expanded"
READ_CHUNK = 1 << 20
NO_ROOM = (
    "Your files have used all the space we keep for this case or your account. "
    "Please contact us if you need to send more."
)


class UploadRefused(Exception):
    """The upload cannot be accepted; `message` says why, for the person; nothing is kept."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DocumentNotFound(Exception):
    """No such document for this person (it may exist, but they may not read it)."""


@dataclass
class Records:
    """Where records live for one running app: the object store and the master keys."""

    store: ObjectStore
    keyring: Keyring
    settings: Settings

    @classmethod
    def open(cls, settings: Settings) -> Records:
        if settings.master_keys:
            keyring = Keyring.from_env(settings.master_keys)
        else:
            keyring = Keyring.load_or_create(settings.var_dir / "keyring.json")
        store: ObjectStore
        if settings.documents_backend == "s3":
            store = S3Store(
                endpoint_url=settings.s3_endpoint_url,
                bucket=settings.s3_bucket,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                region=settings.s3_region,
            )
        else:
            store = LocalStore(settings.var_dir / "documents")
        return cls(store=store, keyring=keyring, settings=settings)


def now() -> datetime:
    return datetime.now(UTC)


# Who may read -----------------------------------------------------------------------------------


def may_read(user: User, case: Case) -> bool:
    """The owning patient, coordinators and admins, and the doctor the case is assigned to now:
    a reassigned doctor loses access at once."""
    if user.role == PATIENT:
        return case.patient == user.id
    if user.role in (COORDINATOR, ADMIN):
        return True
    if user.role == DOCTOR:
        return case.assigned_doctor == user.id
    return False


def may_add_records(user: User, case: Case) -> bool:
    """Only the owning patient adds records themselves (staff read them; doctors send theirs
    through an upload link), and only while the case still accepts records."""
    return user.role == PATIENT and case.patient == user.id and accepts_records(case.status)


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


async def get_document(case: Case, uid: str) -> Document:
    try:
        parsed = uuid.UUID(uid)
    except ValueError:
        raise DocumentNotFound from None
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
    return plugins.describe_records(specialty, [facts_of(doc) for doc in line.documents])


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


# Writing ----------------------------------------------------------------------------------------


async def _used_bytes(*, case: Case | None = None, user: User | None = None) -> int:
    query = Document.select(Document.size).where(Document.status == COMPLETE)
    if case is not None:
        query = query.where(Document.case == case.id)
    if user is not None:
        query = query.where(Document.uploaded_by == user.id)
    return sum(row["size"] for row in await query)


async def upload_room(
    records: Records,
    case: Case,
    user: User | None,
    *,
    pending_case: int = 0,
    pending_user: int = 0,
) -> int:
    """The largest file this person may add to this case now: the per-file limit, and what is
    left of the case's and the account's quotas (less `pending` bytes promised to unfinished
    uploads)."""
    settings = records.settings
    limit = min(
        settings.max_file_bytes,
        settings.max_case_bytes - await _used_bytes(case=case) - pending_case,
    )
    if user is not None:
        limit = min(limit, settings.max_user_bytes - await _used_bytes(user=user) - pending_user)
    return limit


def mib(size: int) -> str:
    return f"{size / 1024**2:,.0f} MB" if size >= 1024**2 else f"{size / 1024:,.0f} KB"


async def _take_head(chunks: AsyncIterator[bytes]) -> tuple[bytearray, bool]:
    """The first HEAD_BYTES (fewer for a tiny file), and whether the stream has ended."""
    head = bytearray()
    while len(head) < HEAD_BYTES:
        try:
            head += await anext(chunks)
        except StopAsyncIteration:
            return head, True
    return head, False


async def store_upload(
    records: Records,
    case: Case,
    *,
    filename: str,
    chunks: AsyncIterator[bytes],
    uploader: User | None,
    source: str = "patient",
    provider_link_id: int | None = None,
    checklist_item: str | None = None,
    plugins: PluginHost | None = None,
    specialty: Specialty | None = None,
    ip: str | None = None,
    parent_id: int | None = None,
) -> Document:
    """Seal and store one upload as it arrives. Raises UploadRefused (and keeps nothing) for a
    refused kind or a limit; the limit is enforced while streaming, whatever the headers said."""
    limit = await upload_room(records, case, uploader)
    if limit <= 0:
        raise UploadRefused(413, NO_ROOM)
    head, _ = await _take_head(chunks)
    too_large = UploadRefused(
        413, f"This file is too large. The most we accept here is {mib(limit)}."
    )
    if len(head) > limit:  # the first network chunk can hold a whole small file
        raise too_large
    sniffed = sniff(bytes(head[:HEAD_BYTES]))
    if not sniffed.accepted:
        raise UploadRefused(415, sniffed.refusal or "This kind of file cannot be uploaded.")
    if sniffed.kind == "zip" and parent_id is not None:
        raise UploadRefused(415, "A ZIP inside a ZIP is not accepted. Please unpack it first.")
    flags: list[str] = []
    if sniffed.kind == "dicom" and neutralise_dicom_preamble(head):
        flags.append("DICOM preamble held a program header and was cleared")

    data_key, file_id = new_data_key(), new_file_id()
    key_id, wrapped = records.keyring.wrap(data_key, file_id=file_id)
    doc = Document(
        case=case.id,
        storage_key=secrets.token_hex(16),
        display_name=display_name(filename),
        media_type=sniffed.media_type or "",
        kind=sniffed.kind or "",
        status=UPLOADING,
        segment_size=DEFAULT_SEGMENT_SIZE,
        file_id=file_id.hex(),
        key_id=key_id,
        wrapped_key=base64.b64encode(wrapped).decode(),
        checklist_item=checklist_item,
        source=source,
        uploaded_by=uploader.id if uploader else None,
        provider_link=provider_link_id,
        parent=parent_id,
        flags=json.dumps(flags),
    )
    await Document.insert(doc)
    sealer = Sealer(data_key, file_id, DEFAULT_SEGMENT_SIZE)
    try:
        async with records.store.open_write(doc.storage_key) as writer:
            for piece in sealer.update(head):
                await writer.write(piece)
            async for chunk in chunks:
                if sealer.plaintext_size + len(chunk) > limit:
                    raise too_large
                for piece in sealer.update(chunk):
                    await writer.write(piece)
            await writer.write(sealer.finalize())
    except BaseException:
        await Document.delete().where(Document.id == doc.id)
        raise
    async with db.transaction():
        await Document.update(
            {
                Document.status: COMPLETE,
                Document.size: sealer.plaintext_size,
                Document.sha256: sealer.sha256_hex(),
                Document.completed_at: now(),
            }
        ).where(Document.id == doc.id)
        if parent_id is None and doc.kind != "zip":  # a ZIP's entry is written once unpacked
            action = _file_event(source)
            note = f"{cases.FILE_EVENTS[action]}: {cases.files_text(1)}"
            await cases.note_event(case.id, action, note, actor=uploader)
        await audit.record(
            "document.upload",
            actor=uploader,
            object_type="document",
            object_id=str(doc.uid),
            case_id=str(case.uid),
            ip=ip,
            details={"kind": doc.kind, "source": source, "bytes": sealer.plaintext_size},
        )
    doc.status, doc.size, doc.sha256 = COMPLETE, sealer.plaintext_size, sealer.sha256_hex()
    if doc.kind == "zip":
        await _expand(
            records,
            case,
            doc,
            uploader=uploader,
            source=source,
            provider_link_id=provider_link_id,
            checklist_item=checklist_item,
            plugins=plugins,
            specialty=specialty,
            ip=ip,
        )
    elif plugins is not None and specialty is not None:
        await inspect(records, doc, plugins, specialty)
    if parent_id is None and case.status == SUBMITTED:
        from core.payments import service as payments  # payments builds on documents

        await payments.maybe_receive(case)  # this upload may have completed the records
    return doc


def _file_event(source: str) -> str:
    """The timeline's action for files from the patient, or from a doctor through a link."""
    return "records_sent" if source == "provider" else "records_added"


async def _expand(records: Records, case: Case, archive: Document, **upload: Any) -> None:
    """Unpack a stored ZIP into documents of their own, each sniffed, sealed and inspected.

    The archive is read through a decrypting, seekable reader: the central directory's counts
    and sizes are checked before anything is extracted, and counted again while extracting.
    A refused archive leaves nothing behind; refused entries are listed on the archive's row.
    """
    loop = asyncio.get_running_loop()
    # Built in a thread: the reader checks the final segment at once, through this loop.
    reader = await asyncio.to_thread(sync_reader, records, archive, loop)
    limits = ZipLimits(max_total_bytes=records.settings.max_file_bytes)
    children: list[Document] = []
    skipped: list[str] = []
    left_out: list[tuple[str, str]] = []
    try:
        entries = await asyncio.to_thread(lambda: list(iter_zip(reader, limits)))
        # Counted out of the quota from here on: the entries take the archive's place.
        await Document.update({Document.status: EXPANDED}).where(Document.id == archive.id)
        for entry in entries:
            stream = await asyncio.to_thread(entry.open)
            try:
                child = await store_upload(
                    records,
                    case,
                    filename=entry.name,
                    chunks=_read_in_thread(stream),
                    parent_id=archive.id,
                    **upload,
                )
                children.append(child)
            except UploadRefused as refused:
                skipped.append(f"{display_name(entry.path)}: {refused.message}")
                left_out.append((display_name(entry.path), refused.message))
            finally:
                await asyncio.to_thread(stream.close)
    except ArchiveError as refused:
        for child in children:
            await records.store.delete(child.storage_key)
        await records.store.delete(archive.storage_key)
        await Document.delete().where(Document.id == archive.id)  # children cascade
        raise UploadRefused(422, f"This ZIP cannot be unpacked: {refused}") from None
    finally:
        await asyncio.to_thread(reader.close)
    await records.store.delete(archive.storage_key)  # its content now lives in the entries
    # What was kept and what was left out, for the patient (facts) and staff (flags).
    archive.facts = json.dumps({"kept": len(children), "left_out": left_out})
    action = _file_event(upload["source"])
    note = f"{cases.FILE_EVENTS[action]}: {cases.files_text(len(children))} from a ZIP"
    if left_out:
        note += f" ({cases.files_text(len(left_out))} left out)"
    async with db.transaction():
        await Document.update(
            {
                Document.flags: json.dumps([f"{len(children)} files unpacked", *skipped]),
                Document.facts: archive.facts,
            }
        ).where(Document.id == archive.id)
        await cases.note_event(case.id, f"zip_{action}", note, actor=upload["uploader"])


async def _read_in_thread(stream: BinaryIO) -> AsyncIterator[bytes]:
    while data := await asyncio.to_thread(stream.read, READ_CHUNK):
        yield data


# Reading ----------------------------------------------------------------------------------------


def _data_key(records: Records, doc: Document) -> tuple[bytes, bytes]:
    file_id = bytes.fromhex(doc.file_id)
    wrapped = base64.b64decode(doc.wrapped_key)
    return records.keyring.unwrap(doc.key_id, wrapped, file_id=file_id), file_id


async def plaintext(records: Records, doc: Document) -> AsyncIterator[bytes]:
    """The document's bytes, authenticated segment by segment and checked against its SHA-256.

    Raises IntegrityError part-way when a segment fails: a response streaming this must then
    be cut off, never finished as if it were complete.
    """
    data_key, file_id = _data_key(records, doc)
    opener = Opener(data_key, file_id, compute_sha256=True)
    async with aclosing(records.store.read(doc.storage_key)) as sealed:
        async for chunk in sealed:
            for piece in opener.update(chunk):
                yield piece
    last = opener.finalize()
    if last:
        yield last
    if opener.sha256_hex() != doc.sha256:
        raise IntegrityError("content does not match the SHA-256 recorded at upload")


def sync_reader(records: Records, doc: Document, loop: asyncio.AbstractEventLoop) -> BinaryIO:
    """A seekable, decrypting file object for code that runs in a worker thread (pydicom,
    zipfile); it reads ranges from the store through the app's event loop, so it must be
    created and used off that loop's thread (it reads as soon as it is created)."""
    data_key, file_id = _data_key(records, doc)

    def read_range(start: int, length: int) -> bytes:
        future = asyncio.run_coroutine_threadsafe(
            records.store.read_range(doc.storage_key, start, length), loop
        )
        return future.result()

    return SealedReader(read_range, data_key, file_id, doc.size)  # type: ignore[return-value]


async def record_access(
    user: User, case: Case, doc: Document, action: str, *, ip: str | None
) -> None:
    await audit.record(
        f"document.{action}",
        actor=user,
        object_type="document",
        object_id=str(doc.uid),
        case_id=str(case.uid),
        ip=ip,
    )


# What plugins read from a document --------------------------------------------------------------


async def inspect(
    records: Records, doc: Document, plugins: PluginHost, specialty: Specialty
) -> None:
    loop = asyncio.get_running_loop()
    opener: Callable[[], BinaryIO] = lambda: sync_reader(records, doc, loop)  # noqa: E731
    found = await asyncio.to_thread(plugins.inspect_document, specialty, doc.kind, opener)
    if not found:
        return
    values: dict[Any, Any] = {}
    if found.facts:
        values[Document.facts] = json.dumps(found.facts)
    if found.flags:
        values[Document.flags] = json.dumps([*json.loads(doc.flags or "[]"), *found.flags])
    if found.checklist_item and not doc.checklist_item:
        values[Document.checklist_item] = found.checklist_item
    if values:
        await Document.update(values).where(Document.id == doc.id)


# Who opened the records -------------------------------------------------------------------------

READ_ACTIONS = ("document.download", "document.view", "document.preview")


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
            await User.objects().where(User.uid.is_in([uuid.UUID(u) for u in uids])) if uids else []
        )
    }
    names = {
        str(doc.uid): doc.display_name
        for doc in await Document.objects().where(Document.case == case.id)
    }
    lines = []
    for row in rows:
        person = people.get(row.actor_uid or "")
        if person is None:
            who = "Unknown"
        elif person.id == viewer.id:
            who = "You"
        else:
            who = f"{person.full_name} ({person.role})"
        # A preview is the person looking at the file in the browser: "viewed" to the patient.
        verb = "downloaded" if row.action == "document.download" else "viewed"
        lines.append(AccessLine(row.at, who, verb, names.get(row.object_id or "", "a file")))
    return lines

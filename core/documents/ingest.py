"""Storing an upload: limits, sniffing, sealing as it streams in, ZIPs unpacked, plugins
inspecting each file, the same content recognised, and telling cases which records are in.

One file is one short transaction, written once the file is sealed, stored and read by its
plugin: the document's row (with what the plugin found), the running totals checked and added
to (core/documents/usage.py), the timeline line, the audit event and — only when the file brings
a checklist item the case did not have — the `RecordsChanged` fact. A file whose content (SHA-256
of the plaintext, computed while sealing) the case holds already is dropped after sealing and
reported `already`: its row would collide on `content_key`, so a retried batch or a folder sent
twice stores nothing twice, on both engines and under concurrency.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from core import clock, context, db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import service as cases
from core.cases.reception import records_in
from core.cases.tables import Case
from core.documents import kinds, usage
from core.documents.archive import ArchiveError, iter_zip
from core.documents.archive import Limits as ZipLimits
from core.documents.content import (
    HEAD_BYTES,
    display_name,
    neutralise_dicom_preamble,
    sniff,
)
from core.documents.reading import sync_reader
from core.documents.records import (
    COMPLETE,
    EXPANDED,
    NO_ROOM,
    READ_CHUNK,
    Records,
    UploadRefused,
    too_large,
)
from core.documents.sealing import (
    DEFAULT_SEGMENT_SIZE,
    Sealer,
    new_data_key,
    new_file_id,
)
from core.documents.tables import Document
from core.facts import RecordsChanged
from core.plugins import PluginHost
from core.specialty import Specialty

# A file up to this size is handed to its plugin from memory, the bytes just sealed; a larger
# one is read back from the store through a decrypting reader. Reading a small DICOM image back
# cost a fifth of the server's time per image (bench/ingest.py, py-spy).
INSPECT_FROM_MEMORY = 1 << 20


class _Already(Exception):
    """The case holds this content already: the new row's `content_key` collided."""


class _OverLimit(Exception):
    """Completing the document would pass the case's or the account's limit."""


@dataclass
class Stored:
    """One file of an upload, taken in: its document, or (`already`) the document that held the
    same content before, when nothing new was stored."""

    document: Document
    already: bool = False


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
    room = await usage.room(
        records.settings, case, user, pending_case=pending_case, pending_user=pending_user
    )
    return room.limit


async def room_for(records: Records, case: Case, user: User | None) -> usage.Room:
    """The room this person has in this case now, to pass along the files of one upload."""
    return await usage.room(records.settings, case, user)


async def _take_head(chunks: AsyncIterator[bytes]) -> tuple[bytearray, bool]:
    """The first HEAD_BYTES (fewer for a tiny file), and whether the stream has ended."""
    head = bytearray()
    while len(head) < HEAD_BYTES:
        try:
            head += await anext(chunks)
        except StopAsyncIteration:
            return head, True
    return head, False


async def store_upload(records: Records, case: Case, **upload: Any) -> Document:
    """`store_file` for a caller that needs only the document (the one that holds the content,
    when the case had it already)."""
    return (await store_file(records, case, **upload)).document


async def store_file(
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
    room: usage.Room | None = None,
) -> Stored:
    """Seal and store one upload as it arrives. Raises UploadRefused (and keeps nothing) for a
    refused kind or a limit; the limit is enforced while streaming, whatever the headers said,
    and again, exactly, when the document is completed. `room` is what is left for this case and
    person (read here when not given; an upload of several files passes one along, and it is
    kept up to date)."""
    settings = records.settings
    if room is None:
        room = await usage.room(settings, case, uploader)
    limit = room.limit
    if limit <= 0:
        raise UploadRefused(status=413, message=NO_ROOM)
    head, _ = await _take_head(chunks)
    refusal = too_large(limit)
    if len(head) > limit:  # the first network chunk can hold a whole small file
        raise refusal
    sniffed = sniff(bytes(head[:HEAD_BYTES]))
    if not sniffed.accepted:
        raise UploadRefused(
            status=415, message=sniffed.refusal or "This kind of file cannot be uploaded."
        )
    if sniffed.kind == "zip" and parent_id is not None:
        raise UploadRefused(
            status=415, message="A ZIP inside a ZIP is not accepted. Please unpack it first."
        )
    if not_taken := kinds.refusal(specialty, sniffed.kind or ""):
        raise UploadRefused(status=415, message=not_taken)
    checklist_item = kinds.checklist_item_for(specialty, checklist_item, sniffed.kind or "")
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
        # A ZIP's entries take its place (and its bytes in the totals) once unpacked.
        status=EXPANDED if sniffed.kind == "zip" else COMPLETE,
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
    sealer = Sealer(data_key, file_id, DEFAULT_SEGMENT_SIZE)
    kept: list[bytes] | None = [bytes(head)] if len(head) <= INSPECT_FROM_MEMORY else None
    async with records.store.open_write(doc.storage_key) as writer:  # aborted if this raises
        for piece in sealer.update(head):
            await writer.write(piece)
        async for chunk in chunks:
            if sealer.plaintext_size + len(chunk) > limit:
                raise refusal
            for piece in sealer.update(chunk):
                await writer.write(piece)
            if kept is not None and sealer.plaintext_size <= INSPECT_FROM_MEMORY:
                kept.append(bytes(chunk))
            else:
                kept = None
        await writer.write(sealer.finalize())
    doc.size, doc.sha256, doc.completed_at = sealer.plaintext_size, sealer.sha256_hex(), clock.now()
    doc.content_key = f"{case.id}:{doc.sha256}"
    try:
        if doc.kind != "zip" and plugins is not None and specialty is not None:
            plaintext = b"".join(kept) if kept is not None else None
            await inspect(records, doc, plugins, specialty, plaintext=plaintext)
        totals = await _complete(records, case, doc, uploader=uploader, ip=ip)
    except _Already:
        await records.store.delete(doc.storage_key)
        existing = await Document.objects().where(Document.content_key == doc.content_key).first()
        if existing is None:  # removed meanwhile (a ZIP that could not be unpacked after all)
            raise UploadRefused(
                status=409, message="This file could not be saved. Please upload it again."
            ) from None
        return Stored(existing, already=True)
    except _OverLimit:
        await records.store.delete(doc.storage_key)
        raise (await usage.room(settings, case, uploader)).refusal() from None
    except BaseException:
        await records.store.delete(doc.storage_key)
        raise
    room.note(settings, totals, case, uploader)
    if doc.kind == "zip":
        await _expand(
            records,
            case,
            doc,
            room=room,
            uploader=uploader,
            source=source,
            provider_link_id=provider_link_id,
            checklist_item=checklist_item,
            plugins=plugins,
            specialty=specialty,
            ip=ip,
        )
    return Stored(doc)


async def _complete(
    records: Records, case: Case, doc: Document, *, uploader: User | None, ip: str | None
) -> dict[str, int]:
    """The one transaction of a stored file: its row, the running totals, the timeline line,
    the `RecordsChanged` fact when it brings a new checklist item, and the audit event (last:
    on PostgreSQL it holds the audit chain's lock until the commit). Returns the new totals."""
    totals: dict[str, int] = {}
    async with db.transaction():
        if not await Document.insert(doc).on_conflict(action="DO NOTHING"):
            raise _Already
        if doc.status == COMPLETE:
            charged = await usage.charge(
                records.settings, case.id, uploader.id if uploader else None, doc.size
            )
            if charged is None:
                raise _OverLimit  # rolls the row back too
            totals = charged
        if doc.parent is None and doc.kind != "zip":  # a ZIP's entries are noted once unpacked
            action = _file_event(doc.source)
            note = f"{cases.FILE_EVENTS[action]}: {cases.files_text(1)}"
            await cases.note_event(case.id, action, note, actor=uploader)
            if doc.checklist_item:
                await _tell_cases(case, {doc.checklist_item})
        await audit.record_about(
            "document.upload",
            doc,
            case=case,
            actor=uploader,
            ip=ip,
            details={"kind": doc.kind, "source": doc.source, "bytes": doc.size},
        )
    return totals


async def _tell_cases(case: Case, items: set[str]) -> None:
    """Tell cases which checklist items the case's records satisfy (it decides whether the case
    is received), inside the caller's transaction — only when one of `items` is new to the case:
    otherwise nothing could change. The items a case has only grow, so an older copy of the case
    row can only make this tell once more than needed, never miss a change."""
    if items <= records_in(case):
        return
    rows = await Document.select(Document.checklist_item).where(
        (Document.case == case.id)
        & (Document.status == COMPLETE)
        & Document.checklist_item.is_not_null()
    )
    present = frozenset(row["checklist_item"] for row in rows)
    await context.current().events.publish(RecordsChanged(case.id, present))
    case.records_in = json.dumps(sorted(present))


def _file_event(source: str) -> str:
    """The timeline's action for files from the patient, or from a doctor through a link."""
    return "records_sent" if source == "provider" else "records_added"


async def _expand(
    records: Records, case: Case, archive: Document, *, room: usage.Room, **upload: Any
) -> None:
    """Unpack a stored ZIP into documents of their own, each sniffed, sealed and inspected.

    The archive is read through a decrypting, seekable reader: the central directory's counts
    and sizes are checked before anything is extracted, and counted again while extracting.
    A refused archive leaves nothing behind; refused entries are listed on the archive's row,
    and entries the case holds already are counted, not stored again.
    """
    loop = asyncio.get_running_loop()
    # Built in a thread: the reader checks the final segment at once, through this loop.
    reader = await asyncio.to_thread(sync_reader, records, archive, loop)
    limits = ZipLimits(max_total_bytes=records.settings.max_file_bytes)
    children: list[Document] = []
    already = 0
    skipped: list[str] = []
    left_out: list[tuple[str, str]] = []
    uploader: User | None = upload["uploader"]
    try:
        entries = await asyncio.to_thread(lambda: list(iter_zip(reader, limits)))
        for entry in entries:
            stream = await asyncio.to_thread(entry.open)
            try:
                stored = await store_file(
                    records,
                    case,
                    filename=entry.name,
                    chunks=_read_in_thread(stream),
                    parent_id=archive.id,
                    room=room,
                    **upload,
                )
                if stored.already:
                    already += 1
                else:
                    children.append(stored.document)
            except UploadRefused as refused:
                skipped.append(f"{display_name(entry.path)}: {refused.message}")
                left_out.append((display_name(entry.path), refused.message))
            finally:
                await asyncio.to_thread(stream.close)
    except ArchiveError as refused:
        for child in children:
            await records.store.delete(child.storage_key)
        await records.store.delete(archive.storage_key)
        async with db.transaction():
            await Document.delete().where(Document.id == archive.id)  # children cascade
            await usage.refund(
                case.id, uploader.id if uploader else None, sum(c.size for c in children)
            )
        raise UploadRefused(status=422, message=f"This ZIP cannot be unpacked: {refused}") from None
    finally:
        await asyncio.to_thread(reader.close)
    await records.store.delete(archive.storage_key)  # its content now lives in the entries
    # What was kept and what was left out, for the patient (facts) and staff (flags).
    facts: dict[str, Any] = {"kept": len(children), "left_out": left_out}
    if already:
        facts["already"] = already
    archive.facts = json.dumps(facts)
    action = _file_event(upload["source"])
    note = f"{cases.FILE_EVENTS[action]}: {cases.files_text(len(children))} from a ZIP"
    if left_out:
        note += f" ({cases.files_text(len(left_out))} left out)"
    if already:
        note += f" ({cases.files_text(already)} already here)"
    async with db.transaction():
        await Document.update(
            {
                Document.flags: json.dumps([f"{len(children)} files unpacked", *skipped]),
                Document.facts: archive.facts,
            }
        ).where(Document.id == archive.id)
        await cases.note_event(case.id, f"zip_{action}", note, actor=uploader)
        await _tell_cases(case, {c.checklist_item for c in children if c.checklist_item})


async def _read_in_thread(stream: BinaryIO) -> AsyncIterator[bytes]:
    while data := await asyncio.to_thread(stream.read, READ_CHUNK):
        yield data


async def inspect(
    records: Records,
    doc: Document,
    plugins: PluginHost,
    specialty: Specialty,
    *,
    plaintext: bytes | None = None,
) -> None:
    """What the specialty's plugin finds in a stored file, put on the document before its row is
    written (facts, flags, a checklist item the person did not choose). The plugin reads
    `plaintext` when given (the bytes just sealed), else the stored file."""
    loop = asyncio.get_running_loop()
    opener: Callable[[], BinaryIO]
    if plaintext is not None:
        opener = lambda: io.BytesIO(plaintext)  # noqa: E731
    else:
        opener = lambda: sync_reader(records, doc, loop)  # noqa: E731
    found = await asyncio.to_thread(plugins.inspect_document, specialty, doc.kind, opener)
    if not found:
        return
    if found.facts:
        doc.facts = json.dumps(found.facts)
        group = found.facts.get("group")
        doc.group_key = str(group)[:100] if group else None
    if found.flags:
        doc.flags = json.dumps([*json.loads(doc.flags or "[]"), *found.flags])
    if found.checklist_item and not doc.checklist_item:
        doc.checklist_item = kinds.checklist_item_for(specialty, found.checklist_item, doc.kind)

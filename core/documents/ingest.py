"""Storing an upload: limits, sniffing, sealing as it streams in, ZIPs unpacked, plugins
inspecting each file, and telling cases which records are in."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

from core import clock, context, db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import service as cases
from core.cases.tables import Case
from core.documents import kinds
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
    UPLOADING,
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
                    raise refusal
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
                Document.completed_at: clock.now(),
            }
        ).where(Document.id == doc.id)
        if parent_id is None and doc.kind != "zip":  # a ZIP's entry is written once unpacked
            action = _file_event(source)
            note = f"{cases.FILE_EVENTS[action]}: {cases.files_text(1)}"
            await cases.note_event(case.id, action, note, actor=uploader)
        await audit.record_about(
            "document.upload",
            doc,
            case=case,
            actor=uploader,
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
    if parent_id is None:
        await records_changed(case)  # this upload may have completed the records
    return doc


async def records_changed(case: Case) -> None:
    """Tell cases which checklist items the case's records satisfy now (it decides whether the
    case is received): after an upload, with whatever a plugin's inspection found."""
    async with db.transaction():
        rows = await Document.select(Document.checklist_item).where(
            (Document.case == case.id)
            & (Document.status == COMPLETE)
            & Document.checklist_item.is_not_null()
        )
        items = frozenset(row["checklist_item"] for row in rows)
        await context.current().events.publish(RecordsChanged(case.id, items))


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
        raise UploadRefused(status=422, message=f"This ZIP cannot be unpacked: {refused}") from None
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
        item = kinds.checklist_item_for(specialty, found.checklist_item, doc.kind)
        if item:
            values[Document.checklist_item] = item
    if values:
        await Document.update(values).where(Document.id == doc.id)

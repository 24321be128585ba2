"""Resumable uploads: a large file sent in fixed-size chunks, so a dropped connection on a slow
phone line costs one chunk, not the whole study.

The person's browser declares the file (name, size), then PUTs chunk 0, 1, … in order. Each
chunk is sealed as it streams in — its own sealed object under this upload's data key, with a
file id derived from the upload's and the chunk's number, so parts cannot be swapped or
replayed — and is counted only once the store committed it. A chunk that arrives again (its
answer was lost) is acknowledged without being stored twice; a chunk out of order is refused
with the number the server expects. When the last chunk is in, the parts are read back in
order, opened, and stored as one document by the ordinary upload path (`service.store_upload`:
sniffing, limits, ZIP expansion, plugin inspection, audit), then deleted.

Nothing here holds a whole chunk in memory or writes plaintext anywhere. The cost of resuming
is one extra pass over the file when it completes (read parts → open → seal the document).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from core import clock
from core.accounts.tables import User
from core.cases.tables import Case
from core.documents import service
from core.documents.content import HEAD_BYTES, display_name, sniff
from core.documents.sealing import IntegrityError, Opener, Sealer, new_data_key, new_file_id
from core.documents.tables import Document, UploadSession
from core.errors import NotFound
from core.ids import parse_uuid
from core.plugins import PluginHost
from core.specialty import Specialty

OPEN, ASSEMBLING, DONE, FAILED = "open", "assembling", "done", "failed"
MAX_OPEN_PER_CASE = 20  # unfinished uploads one case may have at once
PURGE_BATCH = 100


class SessionNotFound(NotFound):
    """No such upload for this case."""


class OutOfOrder(Exception):
    """The chunk is not the one the server expects next; `expected` says which is."""

    def __init__(self, expected: int) -> None:
        super().__init__(f"expected chunk {expected}")
        self.expected = expected


@dataclass(frozen=True)
class Progress:
    """Where an upload stands, as the browser needs it to go on or to resume."""

    upload: str
    size: int
    chunk_size: int
    chunks: int
    chunks_done: int
    status: str
    message: str
    document: str | None
    already: bool = False  # done, by finding the same content in the case: nothing new stored

    @property
    def received_bytes(self) -> int:
        return min(self.chunks_done * self.chunk_size, self.size)

    def as_json(self) -> dict[str, Any]:
        return {
            "upload": self.upload,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunks": self.chunks,
            "chunks_done": self.chunks_done,
            "received_bytes": self.received_bytes,
            "status": self.status,
            "message": self.message,
            "document": self.document,
            "already": self.already,
        }


def chunk_count(session: UploadSession) -> int:
    return max(1, -(-session.size // session.chunk_size))


def chunk_length(session: UploadSession, number: int) -> int:
    return min(session.chunk_size, session.size - number * session.chunk_size)


def _part_key(session: UploadSession, number: int) -> str:
    return f"{session.part_prefix}-{number:06d}"


def _part_file_id(session: UploadSession, number: int) -> bytes:
    # Binds each part to its upload and position: a part stored under another number fails.
    seed = bytes.fromhex(session.file_id) + number.to_bytes(4, "big")
    return hashlib.sha256(b"consilium upload part\x00" + seed).digest()[:16]


def _data_key(records: service.Records, session: UploadSession) -> bytes:
    wrapped = base64.b64decode(session.wrapped_key)
    return records.keyring.unwrap(session.key_id, wrapped, file_id=bytes.fromhex(session.file_id))


async def progress(session: UploadSession) -> Progress:
    doc_uid, already = None, False
    if session.document:
        row = (
            await Document.select(Document.uid, Document.created_at)
            .where(Document.id == session.document)
            .first()
        )
        doc_uid = str(row["uid"]) if row else None
        # The case held this content before the upload began: it was not stored twice.
        already = bool(row) and row["created_at"] < session.created_at
    return Progress(
        upload=str(session.uid),
        size=session.size,
        chunk_size=session.chunk_size,
        chunks=chunk_count(session),
        chunks_done=session.chunks_done,
        status=session.status,
        message=session.message,
        document=doc_uid,
        already=already,
    )


async def _pending_bytes(where: Any) -> int:
    """Bytes declared by unfinished uploads: promised room, counted until they finish."""
    unfinished = UploadSession.status.is_in([OPEN, ASSEMBLING])
    rows = await UploadSession.select(UploadSession.size).where(unfinished & where)
    return sum(row["size"] for row in rows)


async def start(
    records: service.Records,
    case: Case,
    *,
    filename: str,
    size: int,
    uploader: User | None,
    source: str = "patient",
    provider_link_id: int | None = None,
    checklist_item: str | None = None,
) -> UploadSession:
    """Declare an upload. Refuses at once (UploadRefused) what could never be accepted: an
    empty file, or one larger than the room left for this file, case and account."""
    await purge_expired(records)
    if size <= 0:
        raise service.UploadRefused(
            status=400, message="This file is empty. Please choose another one."
        )
    open_count = await UploadSession.count().where(
        (UploadSession.case == case.id) & UploadSession.status.is_in([OPEN, ASSEMBLING])
    )
    if open_count >= MAX_OPEN_PER_CASE:
        raise service.UploadRefused(
            status=409,
            message="Too many uploads are unfinished. Let them finish or cancel some first.",
        )
    room = await service.upload_room(
        records,
        case,
        uploader,
        pending_case=await _pending_bytes(UploadSession.case == case.id),
        pending_user=await _pending_bytes(UploadSession.uploaded_by == uploader.id)
        if uploader
        else 0,
    )
    if room <= 0:
        raise service.UploadRefused(status=413, message=service.NO_ROOM)
    if size > room:
        raise service.too_large(room)
    data_key, file_id = new_data_key(), new_file_id()
    key_id, wrapped = records.keyring.wrap(data_key, file_id=file_id)
    session = UploadSession(
        case=case.id,
        uploaded_by=uploader.id if uploader else None,
        source=source,
        provider_link=provider_link_id,
        filename=display_name(filename),
        size=size,
        chunk_size=records.settings.upload_chunk_bytes,
        checklist_item=checklist_item,
        part_prefix=secrets.token_hex(16),
        file_id=file_id.hex(),
        key_id=key_id,
        wrapped_key=base64.b64encode(wrapped).decode(),
    )
    await UploadSession.insert(session)
    return session


async def get_session(
    case: Case, uid: str, *, provider_link_id: int | None = None
) -> UploadSession:
    """This case's upload; with `provider_link_id`, only one started through that link."""
    parsed = parse_uuid(uid)
    if parsed is None:
        raise SessionNotFound
    where = (UploadSession.uid == parsed) & (UploadSession.case == case.id)
    if provider_link_id is not None:
        where &= UploadSession.provider_link == provider_link_id
    session = await UploadSession.objects().where(where).first()
    if session is None:
        raise SessionNotFound
    return session


async def finished_documents(
    case: Case,
    uids: list[str],
    *,
    uploader: User | None = None,
    provider_link_id: int | None = None,
) -> list[Document]:
    """The documents that these finished uploads of the case stored, each sent by `uploader` or
    through the link (to sum up one upload of several files); any other upload is left out."""
    docs: list[Document] = []
    for uid in dict.fromkeys(uids):
        try:
            session = await get_session(case, uid, provider_link_id=provider_link_id)
        except SessionNotFound:
            continue
        if session.status != DONE or session.document is None:
            continue
        if provider_link_id is None and (uploader is None or session.uploaded_by != uploader.id):
            continue
        doc = await Document.objects().where(Document.id == session.document).first()
        if doc is not None:
            docs.append(doc)
    return docs


async def put_chunk(
    records: service.Records,
    session: UploadSession,
    number: int,
    chunks: AsyncIterator[bytes],
    *,
    case: Case,
    uploader: User | None,
    plugins: PluginHost | None = None,
    specialty: Specialty | None = None,
    ip: str | None = None,
) -> Progress:
    """Store chunk `number`. The last chunk also completes the upload into a document."""
    if session.status == FAILED:
        raise service.UploadRefused(
            status=409, message=session.message or "This upload did not work."
        )
    if session.status != OPEN or number < session.chunks_done:
        return await progress(session)  # already stored: its answer was lost, say so again
    if number != session.chunks_done:
        raise OutOfOrder(session.chunks_done)
    expected = chunk_length(session, number)
    try:
        await _store_part(records, session, number, chunks, expected)
    except service.UploadRefused as refused:
        if refused.status == 415:  # the content itself is refused: no point in going on
            await _fail(records, session, refused.message)
        raise
    stored = (
        await UploadSession.update(
            {UploadSession.chunks_done: number + 1, UploadSession.updated_at: clock.now()}
        )
        .where(
            (UploadSession.id == session.id)
            & (UploadSession.chunks_done == number)
            & (UploadSession.status == OPEN)
        )
        .returning(UploadSession.id)
    )
    fresh = await UploadSession.objects().where(UploadSession.id == session.id).first()
    if not stored or fresh is None:  # a retry of the same chunk got there first
        return await progress(fresh or session)
    if fresh.chunks_done == chunk_count(fresh):
        await _assemble(
            records,
            fresh,
            case=case,
            uploader=uploader,
            plugins=plugins,
            specialty=specialty,
            ip=ip,
        )
        fresh = await UploadSession.objects().where(UploadSession.id == session.id).first()
    return await progress(fresh or session)


async def _store_part(
    records: service.Records,
    session: UploadSession,
    number: int,
    chunks: AsyncIterator[bytes],
    expected: int,
) -> None:
    sealer = Sealer(_data_key(records, session), _part_file_id(session, number))
    head = bytearray()
    cut_short = service.UploadRefused(
        status=400, message="Part of the file did not arrive. It will be sent again."
    )
    async with records.store.open_write(_part_key(session, number)) as writer:
        async for chunk in chunks:
            if sealer.plaintext_size + len(chunk) > expected:
                raise service.UploadRefused(
                    status=400, message="This piece of the file is longer than declared."
                )
            if number == 0 and len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
                if len(head) >= min(HEAD_BYTES, expected):
                    _refuse_kind(bytes(head))
            for piece in sealer.update(chunk):
                await writer.write(piece)
        if sealer.plaintext_size != expected:
            raise cut_short  # the writer is aborted: nothing of this chunk is kept
        await writer.write(sealer.finalize())


def _refuse_kind(head: bytes) -> None:
    """Refuse HTML, scripts and programs on their first bytes rather than after gigabytes; the
    ordinary upload path sniffs again when the document is stored, and that decides."""
    sniffed = sniff(head)
    if not sniffed.accepted:
        raise service.UploadRefused(
            status=415, message=sniffed.refusal or "This kind of file cannot be uploaded."
        )


async def _parts_plaintext(
    records: service.Records, session: UploadSession
) -> AsyncIterator[bytes]:
    data_key = _data_key(records, session)
    for number in range(chunk_count(session)):
        opener = Opener(data_key, _part_file_id(session, number))
        async with aclosing(records.store.read(_part_key(session, number))) as sealed:
            async for data in sealed:
                for piece in opener.update(data):
                    yield piece
        last = opener.finalize()
        if last:
            yield last
        if opener.plaintext_size != chunk_length(session, number):
            raise IntegrityError(f"upload part {number} has the wrong length")


async def _assemble(
    records: service.Records,
    session: UploadSession,
    *,
    case: Case,
    uploader: User | None,
    plugins: PluginHost | None,
    specialty: Specialty | None,
    ip: str | None,
) -> None:
    claimed = (
        await UploadSession.update(
            {UploadSession.status: ASSEMBLING, UploadSession.updated_at: clock.now()}
        )
        .where((UploadSession.id == session.id) & (UploadSession.status == OPEN))
        .returning(UploadSession.id)
    )
    if not claimed:
        return
    try:
        doc = await service.store_upload(
            records,
            case,
            filename=session.filename,
            chunks=_parts_plaintext(records, session),
            uploader=uploader,
            source=session.source,
            provider_link_id=session.provider_link,
            checklist_item=session.checklist_item,
            plugins=plugins,
            specialty=specialty,
            ip=ip,
        )
    except service.UploadRefused as refused:
        await _fail(records, session, refused.message)
        raise
    except Exception:
        await _fail(records, session, "This file could not be saved. Please upload it again.")
        raise
    await UploadSession.update(
        {
            UploadSession.status: DONE,
            UploadSession.document: doc.id,
            UploadSession.updated_at: clock.now(),
        }
    ).where(UploadSession.id == session.id)
    await _delete_parts(records, session)


async def _delete_parts(records: service.Records, session: UploadSession) -> None:
    # One past chunks_done: a chunk in flight when the upload was dropped may have committed.
    for number in range(min(session.chunks_done + 1, chunk_count(session))):
        await records.store.delete(_part_key(session, number))


async def _fail(records: service.Records, session: UploadSession, message: str) -> None:
    await UploadSession.update(
        {
            UploadSession.status: FAILED,
            UploadSession.message: message[:300],
            UploadSession.updated_at: clock.now(),
        }
    ).where(UploadSession.id == session.id)
    await _delete_parts(records, session)


async def cancel(records: service.Records, session: UploadSession) -> None:
    """The person stopped this upload: its parts go, and it no longer counts against quotas."""
    if session.status == ASSEMBLING:
        raise service.UploadRefused(
            status=409, message="This file is being saved and can no longer be stopped."
        )
    if session.status == DONE:
        return
    await UploadSession.delete().where(UploadSession.id == session.id)
    await _delete_parts(records, session)


async def purge_expired(records: service.Records) -> int:
    """Forget uploads nobody touched for `upload_expiry_hours`, with any parts left."""
    cutoff = clock.now() - timedelta(hours=records.settings.upload_expiry_hours)
    stale = (
        await UploadSession.objects()
        .where(UploadSession.updated_at < cutoff)  # finished ones too: their parts are gone
        .limit(PURGE_BATCH)
    )
    for session in stale:
        await _delete_parts(records, session)
        await UploadSession.delete().where(UploadSession.id == session.id)
    return len(stale)


@dataclass(frozen=True)
class Unfinished:
    filename: str
    size: int
    received_bytes: int

    @property
    def percent(self) -> int:
        return int(100 * self.received_bytes / self.size) if self.size else 0


async def unfinished(case: Case) -> list[Unfinished]:
    """Uploads to this case that stopped part-way, for the case page: choosing the same file
    again goes on from where it stopped."""
    rows = (
        await UploadSession.objects()
        .where((UploadSession.case == case.id) & (UploadSession.status == OPEN))
        .order_by(UploadSession.created_at)
    )
    return [
        Unfinished(row.filename, row.size, min(row.chunks_done * row.chunk_size, row.size))
        for row in rows
    ]


async def part_prefixes(prefixes: list[str]) -> set[str]:
    """Which of these part prefixes belong to an unfinished upload (for the scrub's orphan
    check: parts of an upload in progress are not orphans)."""
    if not prefixes:
        return set()
    rows = await UploadSession.select(UploadSession.part_prefix).where(
        UploadSession.part_prefix.is_in(prefixes) & (UploadSession.status != DONE)
    )
    return {row["part_prefix"] for row in rows}

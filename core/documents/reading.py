"""Reading a record back: decrypted as it streams out, its hash checked at the end."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import BinaryIO

from core.documents.records import Records
from core.documents.sealing import (
    IntegrityError,
    Opener,
    SealedReader,
)
from core.documents.tables import Document


def data_key_of(records: Records, doc: Document) -> tuple[bytes, bytes]:
    file_id = bytes.fromhex(doc.file_id)
    wrapped = base64.b64decode(doc.wrapped_key)
    return records.keyring.unwrap(doc.key_id, wrapped, file_id=file_id), file_id


async def plaintext(records: Records, doc: Document) -> AsyncIterator[bytes]:
    """The document's bytes, authenticated segment by segment and checked against its SHA-256.

    Raises IntegrityError part-way when a segment fails: a response streaming this must then
    be cut off, never finished as if it were complete.
    """
    data_key, file_id = data_key_of(records, doc)
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
    data_key, file_id = data_key_of(records, doc)

    def read_range(start: int, length: int) -> bytes:
        future = asyncio.run_coroutine_threadsafe(
            records.store.read_range(doc.storage_key, start, length), loop
        )
        return future.result()

    return SealedReader(read_range, data_key, file_id, doc.size)  # type: ignore[return-value]

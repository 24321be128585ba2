"""Files the service writes itself (a signed report PDF), sealed and stored exactly as an
upload is: their own data key wrapped by the master key, AES-GCM segments, the SHA-256 kept.
They are not records of the case (no Document row): their owner keeps the fields below."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from core.documents.reading import plaintext
from core.documents.records import Records
from core.documents.sealing import DEFAULT_SEGMENT_SIZE, Sealer, new_data_key, new_file_id


@dataclass(frozen=True)
class SealedBlob:
    """Where a sealed file is and how to open it: the owner stores these fields on its row
    (under these names, so `open_blob` reads the row itself)."""

    storage_key: str
    file_id: str  # hex
    key_id: str
    wrapped_key: str  # base64
    size: int
    sha256: str  # of the plaintext

    def fields(self) -> dict[str, object]:
        return dict(self.__dict__)


async def seal_bytes(records: Records, data: bytes) -> SealedBlob:
    data_key, file_id = new_data_key(), new_file_id()
    key_id, wrapped = records.keyring.wrap(data_key, file_id=file_id)
    sealer = Sealer(data_key, file_id, DEFAULT_SEGMENT_SIZE)
    storage_key = secrets.token_hex(16)
    async with records.store.open_write(storage_key) as writer:  # aborted if this raises
        for piece in sealer.update(data):
            await writer.write(piece)
        await writer.write(sealer.finalize())
    return SealedBlob(
        storage_key=storage_key,
        file_id=file_id.hex(),
        key_id=key_id,
        wrapped_key=base64.b64encode(wrapped).decode(),
        size=sealer.plaintext_size,
        sha256=sealer.sha256_hex(),
    )


async def open_blob(records: Records, row: object) -> bytes:
    """The plaintext of a sealed file whose row carries SealedBlob's fields; IntegrityError when
    a segment or the SHA-256 does not match."""
    return b"".join([piece async for piece in plaintext(records, row)])  # type: ignore[arg-type]


async def delete_blob(records: Records, storage_key: str) -> None:
    await records.store.delete(storage_key)

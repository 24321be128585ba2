"""Memory stays flat as uploads grow (docs/security.md 14): measured through HTTP, for the
one-request upload and for a resumable one, by the peak of what Python allocated while the file
went in.
bench/documents.py measures the same for a running server's RSS with gigabyte files."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from core.documents.tables import Document
from tests.conftest import make_settings, use_settings
from tests.support import csrf_token
from tests.test_documents import new_case

MiB = 1024 * 1024
BLOCK = os.urandom(MiB)
BOUNDARY = "----consilium-memory-boundary"


@pytest.fixture
def settings(tmp_path, database_url):
    result = make_settings(tmp_path, database_url, upload_chunk_bytes=4 * MiB)
    with use_settings(result):
        yield result


HEAD = b"%PDF-1.7\n"


async def content(size: int, start: int = 0) -> AsyncIterator[bytes]:
    """Bytes [start, size) of a PDF made as they are sent: byte i is HEAD[i], then BLOCK
    repeating. The test holds no copy of the file."""
    position = start
    if position < len(HEAD):
        yield HEAD[position : min(len(HEAD), size)]
        position = len(HEAD)
    while position < size:
        offset = (position - len(HEAD)) % MiB
        block = BLOCK[offset : offset + min(MiB - offset, size - position)]
        yield block
        position += len(block)


async def multipart_body(size: int) -> AsyncIterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="scan.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
    ).encode()
    async for block in content(size):
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def one_request(client: httpx.AsyncClient, uid: str, size: int) -> None:
    response = await client.post(
        f"/cases/{uid}/documents/",
        content=multipart_body(size),
        headers={
            "content-type": f"multipart/form-data; boundary={BOUNDARY}",
            "x-csrftoken": csrf_token(client),
            "x-upload-client": "1",
        },
    )
    assert response.status_code in (200, 201), response.text


async def in_chunks(client: httpx.AsyncClient, uid: str, size: int) -> None:
    headers = {"x-csrftoken": csrf_token(client), "x-upload-client": "1"}
    started = await client.post(
        f"/cases/{uid}/uploads", data={"filename": "scan.pdf", "size": str(size)}, headers=headers
    )
    state = started.json()
    chunk = state["chunk_size"]
    for number in range(state["chunks"]):
        end = min((number + 1) * chunk, size)
        answer = await client.put(
            f"/cases/{uid}/uploads/{state['upload']}/chunks/{number}",
            content=content(end, number * chunk),
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "done"


async def peak_while(send, client: httpx.AsyncClient, uid: str, size: int) -> int:
    tracemalloc.start()
    try:
        await send(client, uid, size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("send", [one_request, in_chunks], ids=["one_request", "in_chunks"])
async def test_upload_memory_does_not_grow_with_the_file(client, send) -> None:
    _, uid = await new_case(client, f"memory-{send.__name__}@example.com")
    await send(client, uid, 2 * MiB)  # warm up: imports, pools, first-time caches
    small = await peak_while(send, client, uid, 8 * MiB)
    large = await peak_while(send, client, uid, 96 * MiB)
    # Twelve times the file, about the same memory: nothing holds the file, or a growing part.
    assert large < 24 * MiB, f"peak {large / MiB:.1f} MiB for 96 MiB"
    assert large - small < 8 * MiB, f"{small / MiB:.1f} MiB → {large / MiB:.1f} MiB"
    biggest = await Document.objects().order_by(Document.size, ascending=False).first()
    assert biggest.size == 96 * MiB
    expected = hashlib.sha256()
    async for block in content(96 * MiB):
        expected.update(block)
    assert biggest.sha256 == expected.hexdigest()

"""Upload quotas over HTTP (docs/security.md 13): the per-account limit counts every case of the
account, the per-case limit one case; a refusal is a 413 with a sentence a person can act on,
and leaves no document row and no file in the store, on the one-request and resumable paths."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from core.documents.tables import Document, UploadSession
from tests.conftest import make_app, make_settings, use_settings
from tests.support import csrf_token
from tests.test_documents import files_under, multipart, new_case

KiB = 1024
CHUNK = 64 * KiB
PIECE = 16 * KiB  # the one-request body is sent in pieces: the limit is checked while streaming


def pdf(size: int) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(size - 16) + b"\n%%EOF\n"


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None):
    """An account may upload 300 KiB in all; one case may hold 1 MiB; chunks of 64 KiB."""
    result = make_settings(
        tmp_path,
        database_url,
        max_user_bytes=300 * KiB,
        max_case_bytes=1024 * KiB,
        upload_chunk_bytes=CHUNK,
    )
    with use_settings(result):
        yield result


async def another_case(client: httpx.AsyncClient) -> str:
    """A second request of the signed-in patient."""
    response = await client.post(
        "/requests/new", data={"specialty": "general"}, headers={"x-csrftoken": csrf_token(client)}
    )
    assert response.status_code in (302, 303), response.text
    return response.headers["location"].split("/")[2]


async def in_pieces(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), PIECE):
        yield body[start : start + PIECE]


async def one_request(client: httpx.AsyncClient, uid: str, data: bytes) -> httpx.Response:
    body, content_type = multipart([("file", ("scan.pdf", data, "application/pdf"))])
    return await client.post(
        f"/cases/{uid}/documents/",
        content=in_pieces(body),
        headers={"content-type": content_type, "x-csrftoken": csrf_token(client)},
    )


def script_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return {"x-csrftoken": csrf_token(client), "x-upload-client": "1"}


async def start(client: httpx.AsyncClient, uid: str, size: int) -> httpx.Response:
    return await client.post(
        f"/cases/{uid}/uploads",
        data={"filename": "scan.pdf", "size": str(size)},
        headers=script_headers(client),
    )


async def put_all(client: httpx.AsyncClient, uid: str, upload: str, data: bytes) -> httpx.Response:
    """Send every chunk; the answer to the last one (or to the first refused one)."""
    for number, offset in enumerate(range(0, len(data), CHUNK)):
        answer = await client.put(
            f"/cases/{uid}/uploads/{upload}/chunks/{number}",
            content=data[offset : offset + CHUNK],
            headers=script_headers(client),
        )
        if answer.status_code != 200:
            break
    return answer


def store_files(settings) -> tuple[set[Path], list[Path]]:
    documents = settings.var_dir / "documents"
    return set(files_under(documents / "objects")), files_under(documents / "tmp")


async def test_account_limit_counts_every_case_on_the_one_request_path(client, settings) -> None:
    _, first_case = await new_case(client, "account-quota@example.com")
    second_case = await another_case(client)
    assert (await one_request(client, first_case, pdf(200 * KiB))).status_code == 303
    objects_before, _ = store_files(settings)
    assert len(objects_before) == 1

    # The second case is empty, but the account has only 100 KiB left.
    refused = await one_request(client, second_case, pdf(200 * KiB))
    assert refused.status_code == 413, refused.text
    assert "This file is too large. The most we accept here is 100 KB." in refused.text
    assert await Document.count() == 1
    objects_after, tmp = store_files(settings)
    assert objects_after == objects_before and tmp == []

    # What fits in the rest of the account's room is still accepted.
    assert (await one_request(client, second_case, pdf(90 * KiB))).status_code == 303
    assert await Document.count() == 2


async def test_account_limit_on_the_resumable_path(client, settings) -> None:
    _, first_case = await new_case(client, "account-chunks@example.com")
    second_case = await another_case(client)
    first = pdf(200 * KiB)
    upload = (await start(client, first_case, len(first))).json()["upload"]
    done = await put_all(client, first_case, upload, first)
    assert done.status_code == 200 and done.json()["status"] == "done", done.text
    objects_before, _ = store_files(settings)

    # Declared too large for what is left of the account: refused before any byte is sent.
    refused = await start(client, second_case, 200 * KiB)
    assert refused.status_code == 413, refused.text
    assert "This file is too large. The most we accept here is 100 KB." in refused.text
    assert await UploadSession.count().where(UploadSession.status == "open") == 0

    # Declared small enough, but the account's room is taken by a one-request upload while the
    # chunks are on their way: the last chunk's answer is the refusal, and nothing is kept.
    late = pdf(90 * KiB)
    upload = (await start(client, second_case, len(late))).json()["upload"]
    assert (await one_request(client, first_case, pdf(60 * KiB))).status_code == 303
    objects_before, _ = store_files(settings)
    answer = await put_all(client, second_case, upload, late)
    assert answer.status_code == 413, answer.text
    assert "This file is too large." in answer.text
    assert await Document.count() == 2
    objects_after, tmp = store_files(settings)
    assert objects_after == objects_before and tmp == []
    state = (await client.get(f"/cases/{second_case}/uploads/{upload}")).json()
    assert state["status"] == "failed" and "too large" in state["message"]


async def test_case_limit_on_the_one_request_path(tmp_path: Path, database_url) -> None:
    from tests.conftest import open_client

    settings = make_settings(tmp_path, database_url, max_case_bytes=300 * KiB)
    async with open_client(make_app(settings)) as client:
        _, uid = await new_case(client, "case-quota@example.com")
        assert (await one_request(client, uid, pdf(200 * KiB))).status_code == 303
        objects_before, _ = store_files(settings)
        refused = await one_request(client, uid, pdf(200 * KiB))
        assert refused.status_code == 413, refused.text
        assert "This file is too large. The most we accept here is 100 KB." in refused.text
        assert await Document.count() == 1
        objects_after, tmp = store_files(settings)
        assert objects_after == objects_before and tmp == []
        # Another case of the same account has its own room.
        other = await another_case(client)
        assert (await one_request(client, other, pdf(200 * KiB))).status_code == 303

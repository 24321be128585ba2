"""Resumable uploads over HTTP: chunks sealed as they arrive, resumed after a drop, assembled
into one ordinary document; refusals leave nothing behind."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core.cases import service as cases
from core.documents import links
from core.documents.maintenance import scrub
from core.documents.tables import Document, UploadSession
from tests.conftest import make_app, make_settings, open_client, use_settings
from tests.support import csrf_token, make_person, sign_in
from tests.test_documents import CANARY, files_under, new_case

CHUNK = 64 * 1024
# Three full chunks and a short last one; the canary sits across the first chunk boundary.
DATA = b"%PDF-1.7\n" + os.urandom(CHUNK - 20) + CANARY + os.urandom(2 * CHUNK + 1000) + b"\n%%EOF\n"


@pytest.fixture
def settings(tmp_path, database_url):
    """Uploads in 64 KiB chunks (the `client` and `running_app` fixtures use these)."""
    result = make_settings(tmp_path, database_url, upload_chunk_bytes=CHUNK)
    with use_settings(result):
        yield result


@pytest.fixture
def small_chunks(running_app, settings, client):
    return running_app, settings, client


def headers(client: httpx.AsyncClient) -> dict[str, str]:
    return {"x-csrftoken": csrf_token(client), "x-upload-client": "1"}


async def start(client: httpx.AsyncClient, uid: str, size: int, name: str = "MRI report.pdf"):
    return await client.post(
        f"/cases/{uid}/uploads",
        data={"filename": name, "size": str(size), "checklist_item": "clinic_letters"},
        headers=headers(client),
    )


async def put(client: httpx.AsyncClient, uid: str, upload: str, number: int, data: bytes):
    return await client.put(
        f"/cases/{uid}/uploads/{upload}/chunks/{number}", content=data, headers=headers(client)
    )


def piece(number: int, data: bytes = DATA) -> bytes:
    return data[number * CHUNK : (number + 1) * CHUNK]


def stored_objects(settings) -> list[Path]:
    return files_under(settings.var_dir / "documents" / "objects")


async def test_chunks_become_one_sealed_document(small_chunks) -> None:
    _, settings, client = small_chunks
    _, uid = await new_case(client, "chunks@example.com")
    started = await start(client, uid, len(DATA))
    assert started.status_code == 201, started.text
    state = started.json()
    assert state["chunks"] == 4 and state["chunk_size"] == CHUNK and state["chunks_done"] == 0
    upload = state["upload"]
    for number in range(3):
        answer = await put(client, uid, upload, number, piece(number))
        assert answer.status_code == 200 and answer.json()["chunks_done"] == number + 1
        # Parts are sealed: the canary (split across chunks 0 and 1) is nowhere on disk.
        assert all(CANARY[:16] not in p.read_bytes() for p in stored_objects(settings))
    done = await put(client, uid, upload, 3, piece(3))
    assert done.status_code == 200 and done.json()["status"] == "done", done.text

    [doc] = await Document.objects()
    assert str(doc.uid) == done.json()["document"]
    assert doc.status == "complete" and doc.size == len(DATA) and doc.kind == "pdf"
    assert doc.sha256 == hashlib.sha256(DATA).hexdigest()
    assert doc.display_name == "MRI report.pdf" and doc.checklist_item == "clinic_letters"
    # Only the document's own object is left; the parts are gone.
    [only] = stored_objects(settings)
    assert only.name == doc.storage_key and CANARY not in only.read_bytes()
    download = await client.get(f"/cases/{uid}/documents/{doc.uid}")
    assert download.content == DATA


async def test_resume_after_a_dropped_connection(small_chunks) -> None:
    app, settings, client = small_chunks
    _, uid = await new_case(client, "drop@example.com")
    upload = (await start(client, uid, len(DATA))).json()["upload"]
    assert (await put(client, uid, upload, 0, piece(0))).status_code == 200

    # The connection drops half-way through chunk 1: the server sees the client disconnect.
    path = f"/cases/{uid}/uploads/{upload}/chunks/1"
    cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
    sent = []

    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": piece(1)[: CHUNK // 2], "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver.local", 80),
        "client": ("127.0.0.1", 5555),
        "headers": [
            (b"host", b"testserver.local"),
            (b"cookie", cookie.encode()),
            (b"x-csrftoken", csrf_token(client).encode()),
            (b"content-length", str(CHUNK).encode()),
        ],
    }
    await app(scope, receive, send)

    # Where it stands: chunk 1 was not kept, and nothing of it is in the store.
    state = (await client.get(f"/cases/{uid}/uploads/{upload}")).json()
    assert state["chunks_done"] == 1 and state["received_bytes"] == CHUNK
    assert len(stored_objects(settings)) == 1
    assert not files_under(settings.var_dir / "documents" / "tmp")

    # A body that ends early (a proxy cut it) is refused, and said so; also not kept.
    short = await put(client, uid, upload, 1, piece(1)[:100])
    assert short.status_code == 400 and "did not arrive" in short.text
    # Going on from where the server says.
    for number in range(state["chunks_done"], 4):
        assert (await put(client, uid, upload, number, piece(number))).status_code == 200
    [doc] = await Document.objects()
    assert (await client.get(f"/cases/{uid}/documents/{doc.uid}")).content == DATA


async def test_repeated_and_out_of_order_chunks(small_chunks) -> None:
    _, settings, client = small_chunks
    _, uid = await new_case(client, "order@example.com")
    upload = (await start(client, uid, len(DATA))).json()["upload"]
    await put(client, uid, upload, 0, piece(0))
    # The answer to chunk 0 was lost and the browser sends it again: acknowledged, kept once.
    again = await put(client, uid, upload, 0, piece(0))
    assert again.status_code == 200 and again.json()["chunks_done"] == 1
    assert len(stored_objects(settings)) == 1
    # A chunk from the future is refused with the number the server expects.
    ahead = await put(client, uid, upload, 2, piece(2))
    assert ahead.status_code == 409 and ahead.json()["chunks_done"] == 1
    # A chunk longer than its place in the file is refused.
    long = await put(client, uid, upload, 1, piece(1) + b"x")
    assert long.status_code in (400, 413)
    assert (await client.get(f"/cases/{uid}/uploads/{upload}")).json()["chunks_done"] == 1


async def test_refused_kind_stops_at_the_first_chunk(small_chunks) -> None:
    _, settings, client = small_chunks
    _, uid = await new_case(client, "html@example.com")
    page = b"<!doctype html><script>alert(1)</script>" + b" " * (2 * CHUNK)
    upload = (await start(client, uid, len(page), "report.pdf")).json()["upload"]
    refused = await put(client, uid, upload, 0, piece(0, page))
    assert refused.status_code == 415 and "Web pages" in refused.text
    state = (await client.get(f"/cases/{uid}/uploads/{upload}")).json()
    assert state["status"] == "failed" and "Web pages" in state["message"]
    later = await put(client, uid, upload, 1, piece(1, page))
    assert later.status_code == 409
    assert not stored_objects(settings) and await Document.count() == 0


async def test_declared_size_is_checked_against_the_limits(tmp_path, database_url) -> None:

    settings = make_settings(
        tmp_path, database_url, upload_chunk_bytes=CHUNK, max_case_bytes=3 * CHUNK
    )
    app = make_app(settings)
    async with open_client(app) as client:
        _, uid = await new_case(client, "quota@example.com")
        too_big = await start(client, uid, 4 * CHUNK)
        assert too_big.status_code == 413 and "too large" in too_big.text
        assert (await start(client, uid, 0)).status_code == 400
        # Room promised to an unfinished upload is not given twice.
        assert (await start(client, uid, 2 * CHUNK)).status_code == 201
        second = await start(client, uid, 2 * CHUNK)
        assert second.status_code == 413
        assert await UploadSession.count() == 1


async def test_swapped_parts_are_detected_and_nothing_is_kept(small_chunks) -> None:
    _, settings, client = small_chunks
    _, uid = await new_case(client, "swap@example.com")
    data = b"%PDF-1.7\n" + os.urandom(3 * CHUNK - 9)  # three full chunks
    upload = (await start(client, uid, len(data))).json()["upload"]
    for number in range(2):
        await put(client, uid, upload, number, piece(number, data))
    session = await UploadSession.objects().first()
    parts = {p.name: p for p in stored_objects(settings)}
    first, second = (parts[f"{session.part_prefix}-{n:06d}"] for n in (0, 1))
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    failed = await put(client, uid, upload, 2, piece(2, data))
    assert failed.status_code == 500
    state = (await client.get(f"/cases/{uid}/uploads/{upload}")).json()
    assert state["status"] == "failed" and "upload it again" in state["message"]
    assert await Document.count() == 0 and not stored_objects(settings)


async def test_cancel_and_expiry_remove_the_parts(small_chunks) -> None:
    _, settings, client = small_chunks
    _, uid = await new_case(client, "cancel@example.com")
    upload = (await start(client, uid, len(DATA))).json()["upload"]
    await put(client, uid, upload, 0, piece(0))
    cancelled = await client.delete(f"/cases/{uid}/uploads/{upload}", headers=headers(client))
    assert cancelled.status_code == 204
    assert not stored_objects(settings) and await UploadSession.count() == 0
    assert (await client.get(f"/cases/{uid}/uploads/{upload}")).status_code == 404

    stale = (await start(client, uid, len(DATA))).json()["upload"]
    await put(client, uid, stale, 0, piece(0))
    await UploadSession.update(
        {UploadSession.updated_at: UploadSession.updated_at - timedelta(hours=25)}
    ).where(UploadSession.status == "open")
    await start(client, uid, 100)  # any new upload sweeps what expired
    assert await UploadSession.count().where(UploadSession.uid == stale) == 0
    assert not stored_objects(settings)


async def test_only_the_owner_may_use_an_upload(small_chunks) -> None:
    app, _, client = small_chunks
    _, uid = await new_case(client, "owner@example.com")
    upload = (await start(client, uid, len(DATA))).json()["upload"]
    no_token = await client.put(f"/cases/{uid}/uploads/{upload}/chunks/0", content=piece(0))
    assert no_token.status_code == 403
    async with open_client(app) as other:
        await sign_in(other, await make_person("patient", "not-owner@example.com"))
        await other.get("/dashboard")
        assert (await other.get(f"/cases/{uid}/uploads/{upload}")).status_code == 404
        assert (await put(other, uid, upload, 0, piece(0))).status_code == 404
        assert (await start(other, uid, 10)).status_code == 404
    assert (await client.get(f"/cases/{uid}/uploads/{upload}")).json()["chunks_done"] == 0


async def test_scrub_keeps_parts_of_unfinished_uploads(small_chunks) -> None:
    app, _, client = small_chunks
    _, uid = await new_case(client, "scrub@example.com")
    upload = (await start(client, uid, len(DATA))).json()["upload"]
    await put(client, uid, upload, 0, piece(0))
    report = await scrub(app.state.records)
    assert report.orphans == [] and report.ok
    # Once nobody knows the upload, its part is an orphan like any other stray object.
    await UploadSession.delete().where(UploadSession.uid == upload)
    report = await scrub(app.state.records)
    assert len(report.orphans) == 1 and report.orphans[0].endswith("-000000")


async def test_provider_sends_a_large_file_through_the_link(small_chunks) -> None:
    app, _, client = small_chunks
    person, uid = await new_case(client, "provider-big@example.com")
    case = await cases.get_own_case(person.user, uid)
    link, token = await links.create_link(person.user, case, max_uses=2, ip=None)
    _, other_token = await links.create_link(person.user, case, ip=None)
    async with open_client(app) as provider:
        assert (await provider.get(f"/upload/{token}")).status_code == 200
        base = f"/upload/{token}/uploads"
        started = await provider.post(
            base, data={"filename": "study.pdf", "size": str(len(DATA))}, headers=headers(provider)
        )
        assert started.status_code == 201, started.text
        assert started.headers["referrer-policy"] == "no-referrer"
        upload = started.json()["upload"]
        # Another link to the same case does not reach this upload.
        elsewhere = await provider.get(f"/upload/{other_token}/uploads/{upload}")
        assert elsewhere.status_code == 404
        for number in range(4):
            answer = await provider.put(
                f"{base}/{upload}/chunks/{number}", content=piece(number), headers=headers(provider)
            )
            assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "done"

        # A refused file gives its use back, so the provider can send the right one.
        page = b"<html><script>x</script></html>" + b" " * CHUNK
        wrong = (
            await provider.post(
                base, data={"filename": "x.pdf", "size": str(len(page))}, headers=headers(provider)
            )
        ).json()["upload"]
        refused = await provider.put(
            f"{base}/{wrong}/chunks/0", content=page[:CHUNK], headers=headers(provider)
        )
        assert refused.status_code == 415
    [doc] = await Document.objects()
    assert doc.source == "provider" and doc.provider_link == link.id and doc.uploaded_by is None
    assert (await client.get(f"/cases/{uid}/documents/{doc.uid}")).content == DATA
    await link.refresh()
    assert link.uses == 1


async def test_the_last_request_sums_up_the_files_sent_in_pieces(small_chunks) -> None:
    """upload.js sends large files in pieces, then the rest with the finished pieced uploads
    named, so the provider's thank-you (HTML) counts every file, even when a large file took the
    link's last use; the patient's answer counts them too."""
    from tests.test_documents import multipart, text_of

    app, _, client = small_chunks
    person, uid = await new_case(client, "provider-summary@example.com")
    case = await cases.get_own_case(person.user, uid)
    _, token = await links.create_link(person.user, case, max_uses=1, ip=None)
    async with open_client(app) as provider:
        await provider.get(f"/upload/{token}")
        base = f"/upload/{token}/uploads"
        data = {"filename": "study.pdf", "size": str(len(DATA))}
        upload = (await provider.post(base, data=data, headers=headers(provider))).json()["upload"]
        for number in range(4):
            answer = await provider.put(
                f"{base}/{upload}/chunks/{number}", content=piece(number), headers=headers(provider)
            )
        assert answer.json()["status"] == "done"
        body, content_type = multipart([("done_uploads", upload)])
        summary = await provider.post(
            f"/upload/{token}",
            content=body,
            headers={"content-type": content_type, **headers(provider)},
        )
        assert summary.status_code == 200, summary.text
        said = text_of(summary.text)
        assert "Thank you — your files were received" in said
        assert f"1 file received for request {case.reference}." in said
        assert "This link has now been used up." in said
        # Naming uploads is no way round a used-up link: a file is still refused.
        body, content_type = multipart(
            [("done_uploads", upload), ("file", ("more.pdf", DATA[:5000], "application/pdf"))]
        )
        more = await provider.post(
            f"/upload/{token}",
            content=body,
            headers={"content-type": content_type, **headers(provider)},
        )
        assert more.status_code == 404
    assert await Document.count() == 1

    # The patient: a large file in pieces and a small one, summed up in one answer.
    mine = (await start(client, uid, len(DATA))).json()["upload"]
    for number in range(4):
        await put(client, uid, mine, number, piece(number))
    body, content_type = multipart(
        [
            ("done_uploads", f"{mine},{upload},not-an-id"),
            ("file", ("small.pdf", DATA[:5000], "x/y")),
        ]
    )
    answer = await client.post(
        f"/cases/{uid}/documents/",
        content=body,
        headers={"content-type": content_type, **headers(client)},
    )
    assert answer.status_code == 200, answer.text
    # Only the patient's own uploads count (not the link's, nor a made-up id).
    assert "2 files uploaded and stored encrypted." in text_of(answer.text)


async def test_case_page_lists_unfinished_uploads(small_chunks) -> None:
    _, _, client = small_chunks
    _, uid = await new_case(client, "unfinished@example.com")
    upload = (await start(client, uid, len(DATA), "<img src=x onerror=alert(1)>.pdf")).json()
    await put(client, uid, upload["upload"], 0, piece(0))
    page = (await client.get(f"/cases/{uid}")).text
    assert "Not finished yet" in page
    assert "33% received" in page
    assert "&lt;img src=x onerror=alert(1)&gt;.pdf" in page and "<img src=x" not in page
    for number in range(1, 4):
        await put(client, uid, upload["upload"], number, piece(number))
    assert "Not finished yet" not in (await client.get(f"/cases/{uid}")).text

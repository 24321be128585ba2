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
from tests.test_documents import files_under, multipart, new_case, outcome_of, text_of, zipped

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


# Multipart input over a limit or malformed: a sentence and a 4xx, never a 500 (issue 12) -----

SMALL = [(f"IM{n:04d}.pdf", pdf(2 * KiB)) for n in range(6)]


def form_body(files, *, token: str = "") -> tuple[bytes, str]:
    fields: list = [("_csrf_token", token)] if token else []
    fields += [("file", (name, data, "application/pdf")) for name, data in files]
    return multipart(fields)


async def send_form(
    client: httpx.AsyncClient, uid: str, body: bytes, content_type: str, *, script=False
):
    headers = {"content-type": content_type}
    if script:
        headers |= script_headers(client)
    return await client.post(f"/cases/{uid}/documents/", content=body, headers=headers)


async def test_a_plain_form_with_many_files_works(client, settings) -> None:
    """The form of issue 12 (a CD's folder without JavaScript) once answered 500 after 53 files."""
    _, uid = await new_case(client, "many-plain@example.com")
    files = [(f"IM{n:04d}.pdf", pdf(1 * KiB) + bytes([n])) for n in range(120)]
    body, content_type = form_body(files, token=csrf_token(client))
    answer = await send_form(client, uid, body, content_type)
    assert answer.status_code == 303, answer.text
    assert await Document.count() == 120


@pytest.mark.parametrize("script", [False, True], ids=["plain", "script"])
async def test_more_files_than_one_form_takes(client, settings, monkeypatch, script) -> None:
    from core.documents import upload_stream

    monkeypatch.setattr(upload_stream, "MAX_FILES_PER_REQUEST", 4)
    _, uid = await new_case(client, f"too-many-{script}@example.com")
    body, content_type = form_body(SMALL, token=csrf_token(client))
    answer = await send_form(client, uid, body, content_type, script=script)
    assert answer.status_code == 413, answer.text
    said = text_of(answer.text)
    assert "4 files uploaded and stored encrypted." in said
    assert "One upload can carry at most 4 files, so we did not store the other 2 files." in said
    assert "files we have already are recognised and not stored twice" in said
    assert await Document.count() == 4
    if script:
        outcome = outcome_of(answer)
        assert [f["outcome"] for f in outcome["files"]] == ["stored"] * 4
        assert outcome["stopped"].startswith("One upload can carry at most 4 files")
    # Sent again, whole: the four are recognised, the other two go in (so a plain form gets a
    # folder of any size in, in rounds).
    body, content_type = form_body(SMALL[2:], token=csrf_token(client))
    again = await send_form(client, uid, body, content_type, script=script)
    assert again.status_code == 200, again.text
    assert await Document.count() == 6


async def test_more_parts_than_the_parser_reads(client, settings, monkeypatch) -> None:
    from core.documents import upload_stream

    monkeypatch.setattr(upload_stream, "MAX_PARTS", 3)
    _, uid = await new_case(client, "parts@example.com")
    body, content_type = form_body(SMALL, token=csrf_token(client))
    answer = await send_form(client, uid, body, content_type)
    assert answer.status_code == 413, answer.text
    said = text_of(answer.text)
    assert "2 files uploaded and stored encrypted." in said  # the token is the first part
    assert "This upload holds more parts than we can read in one go." in said
    assert await Document.count() == 2


def cut(body: bytes, at: int) -> bytes:
    return body[:at]


@pytest.mark.parametrize(
    "broken",
    ["cut short", "bad part header", "header too long", "no boundary", "garbage"],
)
@pytest.mark.parametrize("script", [False, True], ids=["plain", "script"])
async def test_malformed_bodies_get_a_sentence(client, settings, broken, script) -> None:
    _, uid = await new_case(client, f"malformed-{broken.replace(' ', '-')}-{script}@example.com")
    body, content_type = form_body(SMALL[:2], token=csrf_token(client))
    second = body.index(b'filename="IM0001.pdf"')
    if broken == "cut short":
        body = body[: second + 500]
    elif broken == "bad part header":
        body = body[:second] + b"\r\nnot a header line" + body[second:]
    elif broken == "header too long":
        body = body[:second] + b'; x="' + b"x" * 5000 + b'"' + body[second:]
    elif broken == "no boundary":
        content_type = "multipart/form-data"
    else:
        body = os.urandom(4000)
    answer = await send_form(client, uid, body, content_type, script=script)
    assert answer.status_code == 400, answer.text
    expected = (
        "Please choose a file and send the form again."
        if broken == "no boundary"
        else "The upload was cut short or malformed. Please try again."
    )
    assert expected in text_of(answer.text)
    if broken in ("cut short", "bad part header", "header too long"):
        # The file before the damage is in, and said to be.
        assert await Document.count() == 1
        assert "1 file uploaded and stored encrypted." in text_of(answer.text)


async def test_a_provider_form_over_the_limits_gets_a_sentence(
    client, running_app, monkeypatch
) -> None:
    from core.cases import service as cases
    from core.documents import links, upload_stream
    from tests.conftest import open_client

    monkeypatch.setattr(upload_stream, "MAX_FILES_PER_REQUEST", 4)
    person, uid = await new_case(client, "provider-limits@example.com")
    _, token = await links.create_link(person.user, await cases.get_case(uid), ip=None)
    async with open_client(running_app) as provider:
        await provider.get(f"/upload/{token}")
        body, content_type = form_body(SMALL, token=csrf_token(provider))
        answer = await provider.post(
            f"/upload/{token}", content=body, headers={"content-type": content_type}
        )
        assert answer.status_code == 413, answer.text
        said = text_of(answer.text)
        assert "4 files received for request" in said
        assert "One upload can carry at most 4 files" in said
        broken = await provider.post(
            f"/upload/{token}", content=body[:3000], headers={"content-type": content_type}
        )
        assert broken.status_code == 400
        assert "The upload was cut short or malformed." in text_of(broken.text)
    assert await Document.count() == 4


# Running totals instead of sums over every document --------------------------------------------


async def assert_totals_match_the_documents() -> None:
    from core.documents.tables import DocumentUsage

    rows = await Document.select(Document.case, Document.uploaded_by, Document.size).where(
        Document.status == "complete"
    )
    expected: dict[str, int] = {}
    for row in rows:
        expected[f"case:{row['case']}"] = expected.get(f"case:{row['case']}", 0) + row["size"]
        if row["uploaded_by"] is not None:
            key = f"user:{row['uploaded_by']}"
            expected[key] = expected.get(key, 0) + row["size"]
    held = {row["scope"]: row["bytes"] for row in await DocumentUsage.select()}
    assert {k: v for k, v in held.items() if v} == expected


async def test_totals_follow_every_kind_of_upload(client, settings, monkeypatch) -> None:
    from core.documents import archive, ingest

    _, first = await new_case(client, "totals@example.com")
    second = await another_case(client)
    assert (await one_request(client, first, pdf(20 * KiB))).status_code == 303
    data = pdf(100 * KiB)  # in pieces
    upload = (await start(client, second, len(data))).json()["upload"]
    assert (await put_all(client, second, upload, data)).json()["status"] == "done"
    members = {"a.pdf": pdf(3 * KiB), "b.pdf": pdf(4 * KiB), "x.exe": b"MZ" + b"\0" * 500}
    assert (await one_request_named(client, first, "cd.zip", zipped(members))).status_code == 303
    assert (await one_request(client, first, pdf(5 * KiB))).status_code == 303
    await assert_totals_match_the_documents()

    # A ZIP found broken half way through unpacking gives back the bytes of what it had stored.
    real_iter = archive.iter_zip

    def second_entry_breaks(reader, limits):
        for number, entry in enumerate(real_iter(reader, limits)):
            if number == 1:
                broken = lambda: (_ for _ in ()).throw(archive.ArchiveError("broken"))  # noqa: E731
                object.__setattr__(entry, "open", broken)  # a frozen dataclass
            yield entry

    monkeypatch.setattr(ingest, "iter_zip", second_entry_breaks)
    members = {"c.pdf": pdf(3 * KiB), "d.pdf": pdf(4 * KiB)}
    answer = await one_request_named(client, first, "broken.zip", zipped(members))
    assert answer.status_code == 422, answer.text
    await assert_totals_match_the_documents()


async def one_request_named(client, uid: str, name: str, data: bytes) -> httpx.Response:
    body, content_type = multipart([("file", (name, data, "application/octet-stream"))])
    return await client.post(
        f"/cases/{uid}/documents/",
        content=body,
        headers={"content-type": content_type, "x-csrftoken": csrf_token(client)},
    )


async def test_the_limit_is_checked_again_when_a_file_is_completed(
    client, settings, monkeypatch
) -> None:
    """Two uploads finishing together cannot both take the last room: the completion adds to the
    totals only within the limit, in the same transaction as the row."""
    from core.documents import ingest
    from core.documents.tables import DocumentUsage

    _, uid = await new_case(client, "exact-limit@example.com")
    assert (await one_request(client, uid, pdf(100 * KiB))).status_code == 303
    objects_before, _ = store_files(settings)
    real_complete = ingest._complete

    async def another_upload_got_there_first(records, case, doc, **kwargs):
        # Another file of 150 KiB completed after this one was let in (300 KiB in all).
        await DocumentUsage.update({DocumentUsage.bytes: DocumentUsage.bytes + 150 * KiB}).where(
            DocumentUsage.scope.is_in([f"case:{case.id}", f"user:{doc.uploaded_by}"])
        )
        monkeypatch.setattr(ingest, "_complete", real_complete)
        return await real_complete(records, case, doc, **kwargs)

    monkeypatch.setattr(ingest, "_complete", another_upload_got_there_first)
    refused = await one_request(client, uid, pdf(100 * KiB))
    assert refused.status_code == 413, refused.text
    assert "This file is too large. The most we accept here is 50 KB." in refused.text
    assert await Document.count() == 1
    objects_after, tmp = store_files(settings)
    assert objects_after == objects_before and tmp == []
    [case_row] = await DocumentUsage.select().where(DocumentUsage.scope.like("case:%"))
    assert case_row["bytes"] == 250 * KiB  # this file added nothing

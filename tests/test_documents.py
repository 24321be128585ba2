"""Records over HTTP: streamed, sealed, limited, read back only by who may, every read audited."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file

from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.documents.tables import Document
from tests.conftest import make_app, make_settings, open_client
from tests.support import csrf_token, make_person, sign_in

CANARY = b"CANARY-7f3a9c-patient-secret-findings"
PDF = b"%PDF-1.7\n" + CANARY + b"\n" + os.urandom(3 * 1024 * 1024) + b"\n%%EOF\n"


def multipart(fields: list[tuple[str, str | tuple[str, bytes, str]]]) -> tuple[bytes, str]:
    """A multipart body with the fields in this order (browsers keep the page's order)."""
    boundary = "----consilium-test-boundary"
    body = bytearray()
    for name, value in fields:
        body += f"--{boundary}\r\n".encode()
        if isinstance(value, tuple):
            filename, data, media = value
            body += (
                (
                    f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: {media}\r\n\r\n"
                ).encode()
                + data
                + b"\r\n"
            )
        else:
            body += f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


async def upload(
    client: httpx.AsyncClient,
    uid: str,
    filename: str,
    data: bytes,
    *,
    token_in: str = "field",
    checklist_item: str = "",
) -> httpx.Response:
    token = csrf_token(client)
    fields: list = [("_csrf_token", token)] if token_in == "field" else []
    fields += [("checklist_item", checklist_item), ("file", (filename, data, "application/pdf"))]
    body, content_type = multipart(fields)
    headers = {"content-type": content_type}
    if token_in == "header":
        headers["x-csrftoken"] = token
    return await client.post(f"/cases/{uid}/documents/", content=body, headers=headers)


async def new_case(client: httpx.AsyncClient, email: str, slug: str = "general"):
    person = await make_person("patient", email)
    await sign_in(client, person)
    response = await client.post(
        "/requests/new", data={"specialty": slug}, headers={"x-csrftoken": csrf_token(client)}
    )
    return person, response.headers["location"].split("/")[2]


def text_of(html: str) -> str:
    """What a person reads: the words, without tags or runs of spaces."""
    words = " ".join(re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'").split())
    return re.sub(r" (?=[.,:;?!)])", "", words)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_upload_is_sealed_and_downloads_bit_identical(client, settings) -> None:
    _, uid = await new_case(client, "records@example.com")
    response = await upload(
        client, uid, "../../etc/Report <b>.pdf", PDF, checklist_item="clinic_letters"
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/cases/{uid}?notice=records-uploaded#records"

    [doc] = await Document.objects()
    assert doc.status == "complete" and doc.kind == "pdf" and doc.size == len(PDF)
    assert doc.sha256 == hashlib.sha256(PDF).hexdigest()
    assert doc.display_name == "Report <b>.pdf" and doc.checklist_item == "clinic_letters"

    # Sealed in the store (temp files on every upload path: test_no_plaintext_touches_disk).
    stored = files_under(settings.var_dir / "documents")
    assert stored and all(CANARY not in p.read_bytes() for p in stored)

    page = await client.get(f"/cases/{uid}")
    assert "Report &lt;b&gt;.pdf" in page.text and "Received" in page.text
    download = await client.get(f"/cases/{uid}/documents/{doc.uid}")
    assert download.status_code == 200 and download.content == PDF
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''" in disposition
    actions = [row["action"] for row in await AuditEvent.select(AuditEvent.action)]
    assert "document.upload" in actions and "document.download" in actions


async def test_upload_with_the_header_token(client) -> None:
    _, uid = await new_case(client, "xhr@example.com")
    response = await upload(client, uid, "scan.pdf", PDF, token_in="header")
    assert response.status_code == 303
    assert await Document.count() == 1


async def test_upload_without_a_valid_token_is_refused_before_reading(client, settings) -> None:
    _, uid = await new_case(client, "csrf@example.com")
    body, content_type = multipart([("file", ("a.pdf", PDF, "application/pdf"))])
    response = await client.post(
        f"/cases/{uid}/documents/", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == 403
    forged = await client.post(
        f"/cases/{uid}/documents/",
        content=body,
        headers={"content-type": content_type, "x-csrftoken": "0" * 128},
    )
    assert forged.status_code == 403
    assert await Document.count() == 0 and not files_under(settings.var_dir / "documents")


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("page.html", b"\xef\xbb\xbf  <!doctype html><script>x</script>", "Web pages"),
        ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "Web pages"),
        ("setup.exe", b"MZ" + b"\0" * 600, "Programs"),
        ("notes.txt", b"just some text" * 100, "could not recognise"),
    ],
)
async def test_refused_kinds_get_a_reason_and_leave_nothing(
    client, settings, name: str, data: bytes, message: str
) -> None:
    _, uid = await new_case(client, f"kind-{name}@example.com")
    response = await upload(client, uid, name, data, token_in="header")
    assert response.status_code == 415 and message in response.text
    assert await Document.count() == 0 and not files_under(settings.var_dir / "documents")


async def test_size_limit_is_enforced_while_streaming(tmp_path, database_url) -> None:

    settings = make_settings(tmp_path, database_url, max_file_bytes=1024 * 1024)
    app = make_app(settings)
    async with open_client(app) as client:
        _, uid = await new_case(client, "big@example.com")
        response = await upload(client, uid, "big.pdf", PDF, token_in="header")
        assert response.status_code == 413 and "too large" in response.text
    assert await Document.count() == 0
    assert not files_under(tmp_path / "documents" / "objects")
    assert not files_under(tmp_path / "documents" / "tmp")


async def test_tampered_file_download_is_cut_off(client, settings) -> None:
    _, uid = await new_case(client, "tamper@example.com")
    await upload(client, uid, "scan.pdf", PDF, token_in="header")
    [stored] = files_under(settings.var_dir / "documents" / "objects")
    raw = bytearray(stored.read_bytes())
    raw[-100] ^= 0x01  # a bit flip in the last segment
    stored.write_bytes(bytes(raw))
    [doc] = await Document.objects()
    # The failure comes after the 200 started: the app raises instead of ending the body, so
    # the server cuts the connection and the client never sees a clean, complete download.
    with pytest.raises(Exception, match="after response started"):
        await client.get(f"/cases/{uid}/documents/{doc.uid}")


async def test_other_people_cannot_read_or_add_records(client, running_app) -> None:
    _, uid = await new_case(client, "mine@example.com")
    await upload(client, uid, "scan.pdf", PDF, token_in="header")
    [doc] = await Document.objects()
    async with open_client(running_app) as other:
        await sign_in(other, await make_person("patient", "theirs@example.com"))
        assert (await other.get(f"/cases/{uid}/documents/{doc.uid}")).status_code == 404
        assert (await upload(other, uid, "x.pdf", PDF, token_in="header")).status_code == 404
    async with open_client(running_app) as doctor:
        await sign_in(doctor, await make_person("doctor", "unassigned@example.com"))
        assert (await doctor.get(f"/cases/{uid}/documents/{doc.uid}")).status_code == 404
    async with open_client(running_app) as coordinator:
        await sign_in(coordinator, await make_person("coordinator", "coord-docs@example.com"))
        got = await coordinator.get(f"/cases/{uid}/documents/{doc.uid}")
        assert got.status_code == 200 and got.content == PDF
    assert await Document.count() == 1
    denied = await AuditEvent.count().where(AuditEvent.action == "access.denied")
    assert denied >= 3
    # The patient sees who opened the file: the coordinator, by name and role.
    access = (await client.get(f"/cases/{uid}/access")).text
    assert "Test Coordinator (coordinator)" in access and "Downloaded scan.pdf" in access


async def test_dicom_is_read_by_the_radiology_plugin(client) -> None:
    _, uid = await new_case(client, "ct@example.com", slug="radiology")
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    response = await upload(client, uid, "IM0001", data, token_in="header")
    assert response.status_code == 303
    [doc] = await Document.objects()
    facts = doc.facts if isinstance(doc.facts, dict) else __import__("json").loads(doc.facts)
    expected = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    assert doc.kind == "dicom" and doc.checklist_item == "images"
    assert facts["modality"] == expected.Modality
    case = await cases.get_case(uid)
    assert case.specialty == "radiology"


def dicom_series(count: int) -> list[bytes]:
    """`count` images of one CT study, written as real DICOM Part 10 files."""
    import io

    from pydicom.uid import generate_uid

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    files = []
    for number in range(1, count + 1):
        base.StudyInstanceUID, base.SeriesInstanceUID = study, series
        base.SOPInstanceUID = generate_uid()
        base.file_meta.MediaStorageSOPInstanceUID = base.SOPInstanceUID
        base.InstanceNumber = number
        base.BodyPartExamined = "CHEST"
        base.StudyDate = "20261002"
        buffer = io.BytesIO()
        base.save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


def zipped(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            # A fixed time: the same members make the same bytes (writestr would stamp now).
            entry = zipfile.ZipInfo(name, date_time=(2026, 10, 2, 9, 0, 0))
            archive.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


async def test_zipped_study_is_unpacked_and_summarised(client, settings) -> None:
    _, uid = await new_case(client, "zip@example.com", slug="radiology")
    members = {f"CD/DICOM/IM{i:04d}": data for i, data in enumerate(dicom_series(12))}
    members["CD/report.pdf"] = PDF[:4096]
    members["CD/autorun.exe"] = b"MZ" + b"\0" * 1000
    members["__MACOSX/._junk"] = b"junk"
    response = await upload(client, uid, "study.zip", zipped(members), token_in="header")
    assert response.status_code == 303, response.text
    docs = await Document.objects().where(Document.status == "complete")
    assert sorted(d.kind for d in docs) == ["dicom"] * 12 + ["pdf"]
    assert all(d.parent is not None for d in docs)
    [archive] = await Document.objects().where(Document.status == "expanded")
    assert "autorun.exe: Programs cannot be uploaded." in " ".join(
        __import__("json").loads(archive.flags)
    )
    page = (await client.get(f"/cases/{uid}")).text
    assert "CT chest, 2 Oct 2026, 12 images" in page
    assert page.count("IM0003") == 1  # listed inside the study, not as a line of its own
    # The archive's sealed copy is gone: the entries hold its content now.
    objects = files_under(settings.var_dir / "documents" / "objects")
    assert len(objects) == 13
    pdf = next(d for d in docs if d.kind == "pdf")
    got = await client.get(f"/cases/{uid}/documents/{pdf.uid}")
    assert got.content == PDF[:4096]


async def test_files_left_out_of_a_zip_are_listed(client) -> None:
    """Issue 10, item 6: what a ZIP held that could not be kept is listed, with the reason, after
    the upload and on the case page (not "1 file(s) uploaded")."""
    _, uid = await new_case(client, "left-out@example.com")
    members = {"letter.pdf": PDF[:4096], "tools/autorun.exe": b"MZ" + b"\0" * 1000}
    response = await upload(client, uid, "records.zip", zipped(members))
    assert response.status_code == 303
    assert response.headers["location"] == f"/cases/{uid}?notice=records-left-out#records"
    page = (await client.get(response.headers["location"])).text
    records = text_of(page.split('id="records"', 1)[1].split("</section>", 1)[0])
    assert "we could not keep some of the files in your ZIP" in records
    assert "From records.zip" in records and "we kept 1 file, and left out 1" in records
    assert "autorun.exe — Programs cannot be uploaded." in records
    assert "could not keep" not in text_of(page.split('id="records"', 1)[0])  # said in place

    # upload.js gets HTML (a block of the case page) that says it too and names the next page.
    # (Another letter: the same ZIP again would be recognised as already here.)
    members["letter.pdf"] = PDF[:4000]
    body, content_type = multipart([("file", ("more.zip", zipped(members), "application/zip"))])
    answer = await client.post(
        f"/cases/{uid}/documents/",
        content=body,
        headers={
            "content-type": content_type,
            "x-csrftoken": csrf_token(client),
            "x-upload-client": "1",
        },
    )
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    said = text_of(answer.text)
    assert "1 file uploaded and stored encrypted." in said
    assert "We could not keep 1 file from your ZIP: autorun.exe — Programs cannot be uploaded." in (
        said
    )
    assert f'href="/cases/{uid}?notice=records-left-out#records" data-upload-next' in answer.text
    page = (await client.get(f"/cases/{uid}")).text
    assert page.count("autorun.exe — Programs cannot be uploaded.") == 2  # one line per ZIP


async def test_a_script_upload_answers_with_the_page_to_open(client) -> None:
    _, uid = await new_case(client, "script-upload@example.com")
    body, content_type = multipart(
        [("file", ("a.pdf", PDF[:4096], "application/pdf")), ("file", ("b.pdf", PDF, "x/y"))]
    )
    headers = {"content-type": content_type, "x-csrftoken": csrf_token(client)}
    answer = await client.post(
        f"/cases/{uid}/documents/", content=body, headers={**headers, "x-upload-client": "1"}
    )
    assert answer.status_code == 200
    assert "2 files uploaded and stored encrypted." in text_of(answer.text)
    assert f'href="/cases/{uid}?notice=records-uploaded#records" data-upload-next' in answer.text
    assert "<html" not in answer.text  # a fragment, not a page


async def test_zip_bomb_is_refused_and_leaves_nothing(tmp_path, database_url) -> None:

    settings = make_settings(tmp_path, database_url, max_file_bytes=20 * 1024 * 1024)
    app = make_app(settings)
    bomb = zipped({"zeros.pdf": b"%PDF-1.7\n" + b"\0" * (60 * 1024 * 1024)})
    assert len(bomb) < 200_000
    async with open_client(app) as client:
        _, uid = await new_case(client, "bomb@example.com")
        response = await upload(client, uid, "bomb.zip", bomb, token_in="header")
        assert response.status_code == 422 and "cannot be unpacked" in response.text
    assert await Document.count() == 0
    assert not files_under(tmp_path / "documents" / "objects")


# No plaintext on disk, on any upload path (docs/security.md 14) ------------------------------

TEMP_FILE_MAKERS = ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp")


def _recording(name: str, original: Any, calls: list[tuple[str, str]]) -> Any:
    if isinstance(original, type):  # SpooledTemporaryFile: a class, kept one for isinstance

        class Recorded(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                calls.append((name, str(kwargs.get("dir") or "")))
                super().__init__(*args, **kwargs)

        return Recorded

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append((name, str(kwargs.get("dir") or "")))
        return original(*args, **kwargs)

    return recorded


def record_temp_files(monkeypatch: pytest.MonkeyPatch, folder: Path) -> list[tuple[str, str]]:
    """Point `tempfile` and TMPDIR at `folder` and record (maker, dir) of every temp file made
    from now on, also through names imported before (Litestar's UploadFile holds its own
    `SpooledTemporaryFile`, whose roll-over makes an unlinked file no folder scan would see)."""
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    calls: list[tuple[str, str]] = []
    for name in TEMP_FILE_MAKERS:
        original = getattr(tempfile, name)
        recorder = _recording(name, original, calls)
        for module in list(sys.modules.values()):
            namespace = getattr(module, "__dict__", None)
            if isinstance(namespace, dict) and namespace.get(name) is original:
                monkeypatch.setattr(module, name, recorder)
    return calls


async def _send_in_one_request(app, client, owner, uid, data):
    assert (await upload(client, uid, "findings.pdf", data)).status_code == 303


async def _send_in_chunks(app, client, owner, uid, data):
    script = {"x-csrftoken": csrf_token(client), "x-upload-client": "1"}
    started = await client.post(
        f"/cases/{uid}/uploads",
        data={"filename": "findings.pdf", "size": str(len(data))},
        headers=script,
    )
    state = started.json()
    assert state["chunks"] > 1, state
    size = state["chunk_size"]
    for number in range(state["chunks"]):
        answer = await client.put(
            f"/cases/{uid}/uploads/{state['upload']}/chunks/{number}",
            content=data[number * size : (number + 1) * size],
            headers=script,
        )
        assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "done"


async def _send_through_a_link(app, client, owner, uid, data):
    from core.documents import links

    case = await cases.get_case(uid)
    _, token = await links.create_link(owner.user, case, ip=None)
    async with open_client(app) as provider:  # no account: a link's own page gives the cookie
        assert (await provider.get(f"/upload/{token}")).status_code == 200
        body, content_type = multipart(
            [("_csrf_token", csrf_token(provider)), ("file", ("findings.pdf", data, "x/y"))]
        )
        sent = await provider.post(
            f"/upload/{token}", content=body, headers={"content-type": content_type}
        )
        assert sent.status_code == 200 and "CANARY" not in sent.text, sent.text


async def _send_zipped(app, client, owner, uid, data):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # the canary stays legible
        archive.writestr("scans/findings.pdf", data)
    assert CANARY in buffer.getvalue()
    assert (await upload(client, uid, "records.zip", buffer.getvalue())).status_code == 303


UPLOAD_PATHS = {
    "one-request": _send_in_one_request,
    "resumable": _send_in_chunks,
    "provider-link": _send_through_a_link,
    "zip": _send_zipped,
}


@pytest.mark.parametrize("path", UPLOAD_PATHS)
async def test_no_plaintext_touches_disk(tmp_path, database_url, monkeypatch, path) -> None:
    """A 3 MiB upload with a canary in it, on each upload path: no temp file is made while it
    streams (Litestar's UploadFile would spool it), and the canary is in no file under the app's
    var dir (store, database, sessions) or the temp folder; the record reads back intact."""

    settings = make_settings(tmp_path, database_url, upload_chunk_bytes=1024 * 1024)
    temp = tmp_path / "temp-files"
    app = make_app(settings)
    data = PDF[:-100] + CANARY + PDF[-100:]  # one canary in the first MiB, one in the last
    async with open_client(app) as client:
        owner, uid = await new_case(client, f"canary-{path}@example.com")
        calls = record_temp_files(monkeypatch, temp)
        await UPLOAD_PATHS[path](app, client, owner, uid, data)
        monkeypatch.undo()

        # The session store writes its (non-medical) records atomically through mkstemp.
        sessions = str(settings.var_dir / "sessions")
        assert [call for call in calls if call != ("mkstemp", sessions)] == []
        on_disk = files_under(tmp_path)  # the var dir, holding the temp folder too
        assert files_under(tmp_path / "documents" / "objects")
        assert [p for p in on_disk if CANARY in p.read_bytes()] == []
        [doc] = await Document.objects().where(Document.status == "complete")
        download = await client.get(f"/cases/{uid}/documents/{doc.uid}")
        assert download.content == data


# A folder in batches (issue 12): each file stored, already there, or refused; nothing twice --


def batch_body(files: list[tuple[str, bytes]], **fields: str) -> tuple[bytes, str]:
    """One batch as upload.js sends it: its fields first, then the files."""
    parts: list = list(fields.items())
    parts += [("file", (name, data, "application/octet-stream")) for name, data in files]
    return multipart(parts)


async def send_batch(
    client: httpx.AsyncClient, uid: str, files: list[tuple[str, bytes]], **fields: str
) -> httpx.Response:
    body, content_type = batch_body(files, **fields)
    headers = {"content-type": content_type, "x-csrftoken": csrf_token(client)}
    headers["x-upload-client"] = "1"
    return await client.post(f"/cases/{uid}/documents/", content=body, headers=headers)


def outcome_of(answer: httpx.Response) -> dict:
    """The per-file outcome upload.js reads from the answer (data-upload-outcome)."""
    import html
    import json

    found = re.search(r"data-upload-outcome='([^']*)'", answer.text)
    assert found, answer.text
    return json.loads(html.unescape(found.group(1)))


async def objects_in_store(settings) -> int:
    return len(files_under(settings.var_dir / "documents" / "objects"))


async def test_a_file_sent_again_is_recognised_and_not_stored_twice(client, settings) -> None:
    from core.cases.tables import CaseEvent

    _, uid = await new_case(client, "again@example.com")
    first = await send_batch(client, uid, [("a.pdf", PDF[:5000]), ("b.pdf", PDF[:6000])])
    assert first.status_code == 200, first.text
    assert [f["outcome"] for f in outcome_of(first)["files"]] == ["stored", "stored"]
    events, audits = await CaseEvent.count(), await AuditEvent.count()

    # The same two files (a retried batch), with a new one between them.
    again = await send_batch(
        client, uid, [("a.pdf", PDF[:5000]), ("c.pdf", PDF[:7000]), ("b (1).pdf", PDF[:6000])]
    )
    assert again.status_code == 200, again.text
    files = outcome_of(again)["files"]
    assert [f["outcome"] for f in files] == ["already", "stored", "already"]
    assert "document" not in files[0]  # which row holds it is not said
    said = text_of(again.text)
    assert "1 file uploaded and stored encrypted." in said
    assert "2 files were already here, so we did not store them twice." in said
    assert await Document.count() == 3 and await objects_in_store(settings) == 3
    # Only the new file wrote its timeline line and audit event.
    assert await CaseEvent.count() == events + 1 and await AuditEvent.count() == audits + 1

    # Without JavaScript: a page that says so (the form posted again is harmless).
    plain = await upload(client, uid, "a.pdf", PDF[:5000])
    assert plain.status_code == 200
    assert "1 file was already here, so we did not store it twice." in text_of(plain.text)
    assert await Document.count() == 3

    # Another case of the same person keeps its own copy.
    from tests.test_upload_limits import another_case

    other = await another_case(client)
    assert (await upload(client, other, "a.pdf", PDF[:5000])).status_code == 303
    assert await Document.count() == 4


async def test_the_same_file_sent_twice_at_once_is_stored_once(client, running_app) -> None:
    """Two requests with the same file racing (a retry while the first is still being stored):
    the unique content key lets one row in, on both engines."""
    import asyncio

    _, uid = await new_case(client, "race-same@example.com")
    async with open_client(running_app) as second:
        for cookie in client.cookies.jar:
            second.cookies.set(cookie.name, cookie.value or "", domain=cookie.domain)
        answers = await asyncio.gather(
            *(send_batch(c, uid, [("scan.pdf", PDF)]) for c in (client, second))
        )
    assert [a.status_code for a in answers] == [200, 200]
    outcomes = sorted(outcome_of(a)["files"][0]["outcome"] for a in answers)
    assert outcomes == ["already", "stored"]
    assert await Document.count() == 1


async def test_a_refused_file_does_not_stop_the_others(client, settings) -> None:
    _, uid = await new_case(client, "refused-one@example.com")
    files = [
        ("IM0001.pdf", PDF[:5000]),
        ("viewer.exe", b"MZ" + b"\0" * 600),
        ("IM0002.pdf", PDF[:6000]),
        ("notes.txt", b"just some text" * 100),
    ]
    answer = await send_batch(client, uid, files)
    assert answer.status_code == 200, answer.text
    outcome = outcome_of(answer)
    assert [f["outcome"] for f in outcome["files"]] == ["stored", "refused", "stored", "refused"]
    assert outcome["files"][1]["reason"] == "Programs cannot be uploaded."
    assert await Document.count() == 2
    said = text_of(answer.text)
    assert "2 files uploaded and stored encrypted." in said
    assert "2 files were not stored:" in said
    assert "viewer.exe — Programs cannot be uploaded." in said

    # Without JavaScript: the page lists what is in and what is not.
    body, content_type = batch_body([files[1], ("IM0003.pdf", PDF[:7000])])
    plain = await client.post(
        f"/cases/{uid}/documents/",
        content=body,
        headers={"content-type": content_type, "x-csrftoken": csrf_token(client)},
    )
    assert plain.status_code == 200 and "<html" in plain.text
    said = text_of(plain.text)
    assert "1 file uploaded and stored encrypted." in said
    assert "1 file was not stored: viewer.exe — Programs cannot be uploaded." in said
    assert f'href="/cases/{uid}#records"' in plain.text

    # A batch of refused files only: its status is the refusal's, each file still said.
    only = await send_batch(client, uid, [files[1], files[3]])
    assert only.status_code == 415
    assert [f["outcome"] for f in outcome_of(only)["files"]] == ["refused", "refused"]


async def test_system_files_of_a_folder_are_left_out_unread(client) -> None:
    _, uid = await new_case(client, "system-files@example.com")
    files = [
        ("CD/.DS_Store", b"\0\0\0\1Bud1" * 10),
        ("CD/IM0001.pdf", PDF[:5000]),
        ("CD\\Thumbs.db", b"\xd0\xcf\x11\xe0" * 10),
        ("__MACOSX/CD/._IM0001.pdf", b"\0\5\26\7" * 10),
    ]
    answer = await send_batch(client, uid, files)
    assert answer.status_code == 200, answer.text
    outcomes = [f["outcome"] for f in outcome_of(answer)["files"]]
    assert outcomes == ["skipped", "stored", "skipped", "skipped"]
    said = text_of(answer.text)
    assert "3 system files of the folder (such as" in said  # .DS_Store or Thumbs.db
    assert "Thumbs.db) were left out: they hold nothing for the doctor." in said
    assert "not stored" not in said
    assert await Document.count() == 1
    # A form of system files only has nothing to upload.
    nothing = await upload(client, uid, ".DS_Store", b"\0\0\0\1Bud1")
    assert nothing.status_code == 400 and "Please choose a file to upload." in nothing.text


async def test_the_last_batch_sums_up_the_earlier_ones(client) -> None:
    _, uid = await new_case(client, "sum-up@example.com")
    first = await send_batch(client, uid, [("1.pdf", PDF[:5000]), ("2.pdf", PDF[:5001])])
    stored = [f["document"] for f in outcome_of(first)["files"]]
    last = await send_batch(
        client,
        uid,
        [("3.pdf", PDF[:5002])],
        done_documents=",".join([*stored, "not-an-id", "00000000-0000-4000-8000-000000000000"]),
        done_already="2",
    )
    said = text_of(last.text)
    assert "3 files uploaded and stored encrypted." in said
    assert "2 files were already here" in said


async def test_a_zip_sent_again_stores_nothing_twice(client, settings) -> None:
    _, uid = await new_case(client, "zip-again@example.com", slug="radiology")
    series = dicom_series(4)
    members = {f"DICOM/IM{i}": data for i, data in enumerate(series)}
    assert (await upload(client, uid, "cd.zip", zipped(members))).status_code == 303
    assert await Document.count().where(Document.status == "complete") == 4
    # The same ZIP: recognised whole.
    same = await send_batch(client, uid, [("cd.zip", zipped(members))])
    assert [f["outcome"] for f in outcome_of(same)["files"]] == ["already"]
    # Another ZIP holding two of the same images and one new one: those two are counted.
    more = zipped({"a": series[0], "b": series[1], "c": dicom_series(1)[0]})
    answer = await send_batch(client, uid, [("more.zip", more)])
    said = text_of(answer.text)
    assert "1 file uploaded and stored encrypted." in said
    assert "2 files were already here" in said
    assert await Document.count().where(Document.status == "complete") == 5
    assert await objects_in_store(settings) == 5


@pytest.mark.parametrize("size", [200_000, 3 << 20])
async def test_the_plugin_reads_exactly_the_bytes_that_were_sealed(
    client, running_app, monkeypatch, size: int
) -> None:
    """A small file is handed to its plugin from memory, a large one read back from the store
    (core/documents/ingest.py INSPECT_FROM_MEMORY): either way the plugin reads the same bytes,
    those the document's SHA-256 names, however the upload arrived in pieces."""
    from core.documents import ingest
    from core.documents import service as documents

    assert (size <= ingest.INSPECT_FROM_MEMORY) == (size == 200_000)
    host = running_app.state.plugins
    real = type(host).inspect_document
    read: list[str] = []

    def reading(self, specialty, kind, open_file):  # type: ignore[no-untyped-def]
        with open_file() as stream:
            read.append(hashlib.sha256(stream.read()).hexdigest())
        return real(self, specialty, kind, open_file)

    monkeypatch.setattr(type(host), "inspect_document", reading)
    _, uid = await new_case(client, f"inspect-{size}@example.com")
    content = b"%PDF-1.7\n" + os.urandom(size)

    async def pieces():  # as a form arrives: in pieces of 16 KiB
        for start in range(0, len(content), 16384):
            yield content[start : start + 16384]

    doc = await documents.store_upload(
        running_app.state.records,
        await cases.get_case(uid),
        filename="scan.pdf",
        chunks=pieces(),
        uploader=None,
        plugins=host,
        specialty=host.specialty("general"),
    )
    assert doc.sha256 == hashlib.sha256(content).hexdigest()
    assert read == [doc.sha256]

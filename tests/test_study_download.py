"""Downloading a whole imaging study as one ZIP (core/documents/studies.py, GET
/cases/{uid}/documents/{doc}/study): the study's files and only them, byte for byte, named from
our numbers, read by who may read the records, one audit row."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from core.audit.tables import AuditEvent
from core.cases.tables import Case
from core.documents import studies
from core.documents.tables import Document
from tests.conftest import open_client
from tests.support import make_person, sign_in
from tests.test_dicom import STUDY, make_instance
from tests.test_documents import PDF, files_under, new_case, upload

OTHER_STUDY = "1.2.826.0.1.3680043.8.498.2"
CT_SERIES = f"{STUDY}.3"
PT_SERIES = f"{STUDY}.1"

# Uploaded out of reading order: CT series 3 and PET series 1 of one PET/CT study.
UPLOADS = {
    "ct-2.dcm": make_instance(2, series=CT_SERIES, series_number=3, modality="CT"),
    "pt-1.dcm": make_instance(1, series=PT_SERIES, series_number=1, modality="PT"),
    "ct-1.dcm": make_instance(1, series=CT_SERIES, series_number=3, modality="CT"),
    "pt-2.dcm": make_instance(2, series=PT_SERIES, series_number=1, modality="PT"),
}
EXPECTED = {
    "S001-PT/00001.dcm": "pt-1.dcm",
    "S001-PT/00002.dcm": "pt-2.dcm",
    "S003-CT/00001.dcm": "ct-1.dcm",
    "S003-CT/00002.dcm": "ct-2.dcm",
}
ELSEWHERE = make_instance(1, study=OTHER_STUDY, series=f"{OTHER_STUDY}.1", modality="MR")


async def send(client: httpx.AsyncClient, uid: str, name: str, data: bytes) -> Document:
    response = await upload(client, uid, name, data, token_in="header")
    assert response.status_code == 303, response.text
    return await Document.objects().where(Document.display_name == name).first()


async def case_with_studies(client: httpx.AsyncClient) -> tuple[str, dict[str, Document]]:
    """A patient's radiology case with the PET/CT study, a second study and a letter."""
    _, uid = await new_case(client, "study-owner@example.com", "radiology")
    stored = {name: await send(client, uid, name, data) for name, data in UPLOADS.items()}
    stored["other.dcm"] = await send(client, uid, "other.dcm", ELSEWHERE)
    stored["letter.pdf"] = await send(client, uid, "letter.pdf", PDF)
    return uid, stored


@asynccontextmanager
async def assigned_doctor(running_app, uid: str) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-in browser of the doctor the case is assigned to (set directly: assignment is
    tested in test_assignment.py)."""
    doctor = await make_person("doctor", "study-reader@example.com")
    await Case.update({Case.assigned_doctor: doctor.user.id}).where(Case.uid == uid)
    async with open_client(running_app) as browser:
        await sign_in(browser, doctor)
        yield browser


async def study_rows() -> list[AuditEvent]:
    return await AuditEvent.objects().where(AuditEvent.action == "document.download_study")


async def test_the_assigned_doctor_downloads_the_study(client, running_app) -> None:
    uid, stored = await case_with_studies(client)
    case = await Case.objects().where(Case.uid == uid).first()
    async with assigned_doctor(running_app, uid) as doctor:
        # Any file of the study names it: here one that is neither first stored nor first read.
        response = await doctor.get(f"/cases/{uid}/documents/{stored['pt-2.dcm'].uid}/study")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        assert response.headers["x-content-type-options"] == "nosniff"
        disposition = response.headers["content-disposition"]
        assert disposition.startswith(f'attachment; filename="{case.reference}-study-1.zip"')

        archive = zipfile.ZipFile(io.BytesIO(response.content))
        assert archive.testzip() is None
        # Exactly this study's files, in reading order, under our names, byte for byte.
        assert archive.namelist() == list(EXPECTED)
        for name, uploaded in EXPECTED.items():
            assert archive.read(name) == UPLOADS[uploaded]
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.extra[:2] == b"\x01\x00"  # ZIP64 (sizes past 4 GB fit)
        assert ELSEWHERE not in response.content and b"%PDF" not in response.content

        # The other study is its own ZIP, numbered second.
        other = await doctor.get(f"/cases/{uid}/documents/{stored['other.dcm'].uid}/study")
        assert f"{case.reference}-study-2.zip" in other.headers["content-disposition"]
        assert zipfile.ZipFile(io.BytesIO(other.content)).namelist() == ["S001-MR/00001.dcm"]

    # One row per download, about the study's first stored file, with the count only.
    first, second = await study_rows()
    assert first.object_id == str(stored["ct-2.dcm"].uid) and first.case_id == uid
    assert json.loads(first.details) == {"files": 4}
    assert second.object_id == str(stored["other.dcm"].uid)
    assert json.loads(second.details) == {"files": 1}
    assert not await AuditEvent.exists().where(AuditEvent.action == "document.download")

    # The patient sees both in "who opened my records".
    page = (await client.get(f"/cases/{uid}/access")).text
    label = json.loads(stored["ct-2.dcm"].facts)["group_label"]
    assert f"Downloaded the whole study ({label}, 4 files)" in page
    assert page.count("Downloaded the whole study") == 2


async def test_only_readers_of_the_case_get_the_study(client, running_app) -> None:
    uid, stored = await case_with_studies(client)
    url = f"/cases/{uid}/documents/{stored['ct-1.dcm'].uid}/study"
    # The owning patient may download it too (the download's rule).
    assert (await client.get(url)).status_code == 200
    async with open_client(running_app) as other:
        await sign_in(other, await make_person("patient", "study-other@example.com"))
        assert (await other.get(url)).status_code == 404
    async with open_client(running_app) as doctor:
        await sign_in(doctor, await make_person("doctor", "study-unassigned@example.com"))
        assert (await doctor.get(url)).status_code == 404
    async with open_client(running_app) as anonymous:
        assert (await anonymous.get(url)).status_code in (302, 303)
    assert len(await study_rows()) == 1  # the patient's own; refusals download nothing


async def test_a_file_outside_any_study_is_not_found(client, running_app) -> None:
    uid, stored = await case_with_studies(client)
    damaged = make_instance(7)
    await send(client, uid, "cut.dcm", damaged[: damaged.index(b"Doe^Jane") + 3])  # no group
    cut = await Document.objects().where(Document.display_name == "cut.dcm").first()
    unknown = "00000000-0000-4000-8000-000000000000"
    for doc in (stored["letter.pdf"].uid, cut.uid, "not-a-uid", unknown):
        assert (await client.get(f"/cases/{uid}/documents/{doc}/study")).status_code == 404
    assert not await study_rows()


async def test_staff_see_the_study_link_on_study_lines_only(client, running_app) -> None:
    uid, stored = await case_with_studies(client)
    async with open_client(running_app) as coordinator:
        await sign_in(coordinator, await make_person("coordinator", "study-coord@example.com"))
        page = (await coordinator.get(f"/staff/cases/{uid}")).text
    lead = stored["ct-2.dcm"].uid
    assert (
        f'href="/cases/{uid}/documents/{lead}/study">Download the whole study (ZIP, 4 files)'
        in (page)
    )
    assert f"/documents/{stored['other.dcm'].uid}/study" in page
    assert "(ZIP, 1 file)" in page
    assert page.count("Download the whole study") == 2  # not for the letter


async def test_large_files_are_read_twice_not_held(client, running_app, monkeypatch) -> None:
    """Over HELD_BYTES a file's CRC comes from a first read and its bytes from a second: the
    same ZIP, without holding the file."""
    monkeypatch.setattr(studies, "HELD_BYTES", 0)
    uid, stored = await case_with_studies(client)
    response = await client.get(f"/cases/{uid}/documents/{stored['ct-1.dcm'].uid}/study")
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert {name: archive.read(name) for name in archive.namelist()} == {
        name: UPLOADS[uploaded] for name, uploaded in EXPECTED.items()
    }


async def test_a_damaged_file_cuts_the_download_off(client, settings) -> None:
    uid, stored = await case_with_studies(client)
    victim = stored["pt-2.dcm"]
    [path] = [
        p for p in files_under(settings.var_dir / "documents") if p.name == victim.storage_key
    ]
    raw = bytearray(path.read_bytes())
    raw[-40] ^= 0x01
    path.write_bytes(bytes(raw))
    # Never a clean, complete ZIP: the server ends the connection after the 200 started.
    with pytest.raises(Exception, match="after response started"):
        await client.get(f"/cases/{uid}/documents/{stored['ct-1.dcm'].uid}/study")


def doc(number: int, **facts: str) -> Document:
    return Document(id=number, kind="dicom", facts=json.dumps({"group": STUDY, **facts}))


def test_names_come_from_numbers_and_never_from_headers() -> None:
    files = [
        doc(1, series_uid="a", series_number="2", modality="../CT", instance_number="5"),
        doc(2, series_uid="a", series_number="2", modality="../CT", instance_number="5"),
        doc(3, series_uid="b", modality="M\\R/..", instance_number="x"),  # no series number
        doc(4, series_uid="c", series_number="2", instance_number="-1"),  # same number as "a"
        doc(5, series_uid="d", series_number="1", modality="PT", instance_number="12"),
        doc(6, series_uid="e", series_number="2", modality="CT", instance_number="1"),
    ]
    entries = studies.entry_names(files)
    assert [entry.document.id for entry in entries] == [5, 1, 2, 4, 6, 3]
    assert {entry.document.id: entry.name for entry in entries} == {
        5: "S001-PT/00012.dcm",
        1: "S002-CT/00005.dcm",
        2: "S002-CT/00005-2.dcm",  # a repeated instance number
        4: "S002-OT/00001.dcm",  # no modality: "other"; no usable instance number: its place
        6: "S002-CT-2/00001.dcm",  # another series with the same number and modality
        3: "S005-MR/00001.dcm",  # no series number: its place among the series
    }
    assert all(".." not in e.name and e.name.count("/") == 1 for e in entries)

"""Radiology: reading DICOM headers and summarising studies (plugins/radiology/dicom.py)."""

from __future__ import annotations

import io
import json
import random
import struct
import tracemalloc
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import config
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    MRImageStorage,
)

from core.documents.tables import Document
from core.plugins import PluginHost
from core.specialty import DocumentFacts, RecordsDetail
from plugins.radiology.dicom import (
    DIRECTORY,
    NO_STUDY,
    NOT_DICOM,
    TRUNCATED,
    DicomFacts,
    read_dicom,
    read_dicom_facts,
    summarise_studies,
)
from tests.conftest import make_settings

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES_A = "1.2.826.0.1.3680043.8.498.1.1"
SERIES_B = "1.2.826.0.1.3680043.8.498.1.2"

# A damaged file makes pydicom warn (unknown character set, VR guessed…): expected there.
quiet_pydicom = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)  # shipped in the pydicom wheel: no network
    assert path, f"{name} is not bundled with pydicom"
    return Path(path)


def make_instance(
    number: int = 1,
    *,
    study: str = STUDY,
    series: str = SERIES_A,
    series_number: int = 1,
    modality: str = "CT",
    body_part: str | None = "CHEST",
    study_date: str | None = "20261002",
    transfer_syntax: str = ExplicitVRLittleEndian,
    sop_class: str = CTImageStorage,
    **extra: object,
) -> bytes:
    """A small but complete DICOM Part 10 file (4×4 pixels, 16 bits), as bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = f"{series}.{number}"
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{series}.{number}"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-0042"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    if study_date:
        ds.StudyDate = study_date
    ds.Modality = modality
    if body_part:
        ds.BodyPartExamined = body_part
    ds.StudyDescription = "CT THORAX"
    ds.SeriesDescription = f"Series {series_number}"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = bytes(range(32))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read(data: bytes):
    return read_dicom(io.BytesIO(data))


# --- pydicom's bundled files --------------------------------------------------------------------


def test_bundled_ct() -> None:
    with bundled("CT_small.dcm").open("rb") as f:
        facts = read_dicom_facts(f)
    assert facts == DicomFacts(
        study_uid="1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
        series_uid="1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
        sop_instance_uid="1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
        patient_name="CompressedSamples, CT1",
        patient_id="1CT1",
        study_date="2004-01-19",
        modality="CT",
        body_part=None,
        study_description="e+1",
        series_description=None,
        series_number=1,
        instance_number=1,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("MR_small.dcm", {"modality": "MR", "patient_name": "CompressedSamples, MR1"}),
        ("JPEG2000.dcm", {"modality": "NM", "body_part": "WHOLE BODY", "instance_number": 3}),
        ("rtplan.dcm", {"modality": "RTPLAN", "patient_name": "Last, First mid"}),
        ("ExplVR_BigEnd.dcm", {"modality": "US", "study_date": "1997-04-24"}),  # "1997.04.24"
        ("image_dfl.dcm", {"modality": "OT"}),  # deflated transfer syntax
        ("MR_truncated.dcm", {"modality": "MR"}),  # cut inside the pixels: the header is whole
    ],
)
def test_bundled_files(name: str, expected: dict[str, object]) -> None:
    with bundled(name).open("rb") as f:
        facts = read_dicom_facts(f)
    assert facts is not None
    assert {key: getattr(facts, key) for key in expected} == expected


def test_file_without_preamble_is_not_accepted() -> None:
    with bundled("no_meta.dcm").open("rb") as f:
        reading = read_dicom(f)
    assert reading.facts is None and reading.reason == NOT_DICOM


def test_bundled_studies_are_summarised_separately() -> None:
    facts = []
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        with bundled(name).open("rb") as f:
            facts.append(read_dicom_facts(f))
    labels = [s.label for s in summarise_studies(facts)]
    assert labels == [
        "MRI, 26 Aug 2004, 1 image",
        "Nuclear medicine whole body, 26 Aug 2004, 1 image",
        "CT, 19 Jan 2004, 1 image",
    ]


# --- generated files ----------------------------------------------------------------------------


def test_generated_instance() -> None:
    facts = read_dicom_facts(io.BytesIO(make_instance(7, series_number=3)))
    assert facts is not None
    assert facts.as_dict() == {
        "study_uid": STUDY,
        "series_uid": SERIES_A,
        "sop_instance_uid": f"{SERIES_A}.7",
        "patient_name": "Doe, Jane",
        "patient_id": "MRN-0042",
        "study_date": "2026-10-02",
        "modality": "CT",
        "body_part": "CHEST",
        "study_description": "CT THORAX",
        "series_description": "Series 3",
        "series_number": "3",
        "instance_number": "7",
    }


@quiet_pydicom
def test_non_ascii_names_and_hostile_text_are_cleaned() -> None:
    data = make_instance(
        PatientName="Müller^Jürgen^Karl=ミュラー^ユルゲン",
        StudyDescription="CT\u202e THORAX\x1b[2J\r\n  mit KM",
    )
    facts = read_dicom_facts(io.BytesIO(data))
    assert facts is not None
    assert facts.patient_name == "Müller, Jürgen Karl"
    assert facts.study_description == "CT THORAX[2J mit KM"


def test_ideographic_only_name() -> None:
    facts = read_dicom_facts(io.BytesIO(make_instance(PatientName="=山田^太郎")))
    assert facts is not None and facts.patient_name == "山田, 太郎"


def test_missing_and_invalid_values_are_left_out() -> None:
    data = make_instance(study_date="20261345", body_part=None, PatientName="^^^^")
    facts = read_dicom_facts(io.BytesIO(data))
    assert facts is not None
    assert (facts.study_date, facts.body_part, facts.patient_name) == (None, None, None)


def test_a_huge_value_is_not_read() -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian  # 4-byte lengths
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{SERIES_A}.1"
    ds.add(DataElement(0x00081030, "LO", "x" * 200_000, validation_mode=config.IGNORE))
    ds.StudyInstanceUID = STUDY
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    facts = read_dicom_facts(io.BytesIO(buffer.getvalue()))
    assert facts is not None
    assert (facts.study_uid, facts.study_description) == (STUDY, None)


def test_deflated_file_is_read() -> None:
    data = make_instance(transfer_syntax=DeflatedExplicitVRLittleEndian)
    facts = read_dicom_facts(io.BytesIO(data))
    assert facts is not None and facts.patient_name == "Doe, Jane"


def test_deflate_bomb_is_inflated_only_as_far_as_needed() -> None:
    data = make_instance(transfer_syntax=DeflatedExplicitVRLittleEndian)
    (meta_length,) = struct.unpack_from("<I", data, 140)  # (0002,0000) UL, value at 140
    header = data[: 144 + meta_length]
    deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    huge = 200 * 1024 * 1024
    body = bytearray(deflate.compress(struct.pack("<HH2sHI", 0x0009, 0x1001, b"OB", 0, huge)))
    chunk = bytes(1024 * 1024)
    for _ in range(huge // len(chunk)):
        body += deflate.compress(chunk)
    body += deflate.compress(struct.pack("<HH2sH", 0x0020, 0x000D, b"UI", 6) + b"1.2.3\x00")
    body += deflate.flush()
    assert len(body) < 2 * 1024 * 1024  # 200 MB in under 2 MB

    tracemalloc.start()
    try:
        reading = read(header + bytes(body))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reading.facts is None and reading.reason == NO_STUDY
    assert peak < 64 * 1024 * 1024


def test_dicomdir_is_recognised_as_a_table_of_contents() -> None:
    data = make_instance(sop_class=MediaStorageDirectoryStorage)
    reading = read(data)
    assert (reading.facts, reading.reason, reading.directory) == (None, DIRECTORY, True)


# --- malformed files: None and a reason, never an exception -------------------------------------


def test_truncated_file() -> None:
    data = make_instance()
    position = data.index(b"Doe^Jane")
    reading = read(data[: position + 3])  # cut inside the patient's name
    assert reading.facts is None and reading.reason == TRUNCATED
    reading = read(data[:300])  # cut before the study is named
    assert reading.facts is None and reading.reason in (TRUNCATED, NO_STUDY)


def test_file_cut_inside_a_skipped_value_is_truncated() -> None:
    data = make_instance(ImageComments="y" * 1000)  # (0020,4000), after the UIDs
    position = data.index(b"yyyy")
    reading = read(data[: position + 10])
    assert reading.facts is None and reading.reason == TRUNCATED


@quiet_pydicom
def test_random_bytes_with_a_dicm_marker() -> None:
    noise = random.Random(7)
    for _ in range(50):
        data = noise.randbytes(128) + b"DICM" + noise.randbytes(noise.randrange(0, 3000))
        reading = read(data)
        assert reading.facts is None and reading.reason


@pytest.mark.parametrize("data", [b"", b"DICM", bytes(131), b"%PDF-1.7" + bytes(400)])
def test_not_dicom_at_all(data: bytes) -> None:
    assert read(data).reason == NOT_DICOM


@quiet_pydicom
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_after_the_marker_never_raise(tail: bytes) -> None:
    reading = read(bytes(128) + b"DICM" + tail)
    assert (reading.facts is None) == (reading.reason is not None)


GOOD = make_instance()


@quiet_pydicom
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(132, len(GOOD) - 1), st.integers(1, 255)), max_size=8))
def test_corrupted_files_never_raise(flips: list[tuple[int, int]]) -> None:
    data = bytearray(GOOD)
    for position, mask in flips:
        data[position] ^= mask
    reading = read(bytes(data))
    assert (reading.facts is None) == (reading.reason is not None)


# --- summaries ----------------------------------------------------------------------------------


def test_five_images_in_two_series_are_one_study() -> None:
    files = [make_instance(n, series=SERIES_A, series_number=2) for n in (1, 2, 3)]
    files += [make_instance(n, series=SERIES_B, series_number=1) for n in (1, 2)]
    facts = [read_dicom_facts(io.BytesIO(data)) for data in files]
    (study,) = summarise_studies([f for f in facts if f])
    assert study.label == "CT chest, 2 Oct 2026, 5 images"
    assert (study.study_uid, study.study_date) == (STUDY, "2026-10-02")
    assert (study.modalities, study.body_parts) == (("CT",), ("CHEST",))
    assert (study.series_count, study.image_count) == (2, 5)
    assert study.description == "CT THORAX"
    assert study.patient_names == ("Doe, Jane",)
    assert [(s.number, s.series_uid, s.image_count) for s in study.series] == [
        (1, SERIES_B, 2),
        (2, SERIES_A, 3),
    ]


def test_summaries_newest_first_duplicates_once_and_plain_labels() -> None:
    older = "1.2.3.4"
    mri = [
        make_instance(
            n,
            study=older,
            series=f"{older}.1",
            modality="MR",
            body_part="HEAD",
            study_date="20250105",
            sop_class=MRImageStorage,
        )
        for n in (1, 2)
    ]
    undated = make_instance(
        study="9.9", series="9.9.1", modality="XX", body_part=None, study_date=None
    )
    ct = make_instance(1)
    files = [*mri, mri[0], undated, ct, ct]  # the same images uploaded twice
    summaries = summarise_studies([read_dicom_facts(io.BytesIO(d)) for d in files])
    assert [s.label for s in summaries] == [
        "CT chest, 2 Oct 2026, 1 image",
        "MRI head, 5 Jan 2025, 2 images",
        "XX, 1 image",
    ]


def test_label_without_modality_or_date() -> None:
    facts = DicomFacts(study_uid="1.2", series_uid="1.2.1", modality="SR")
    (study,) = summarise_studies([facts])
    assert study.label == "Imaging study, 1 image"
    assert summarise_studies([]) == []


def test_label_with_several_modalities_and_a_big_count() -> None:
    facts = [
        DicomFacts(
            study_uid="1",
            series_uid="1.1",
            sop_instance_uid=f"1.1.{i}",
            modality="PT",
            body_part="WHOLEBODY",
            study_date="2026-03-09",
        )
        for i in range(1200)
    ] + [DicomFacts(study_uid="1", series_uid="1.2", modality="CT", body_part="WHOLEBODY")]
    (study,) = summarise_studies(facts)
    assert study.label == "PET/CT whole body, 9 Mar 2026, 1,201 images"


def test_invalid_values_are_not_echoed_to_logs_or_warnings(
    caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    data = make_instance(PatientID="x" * 80 + "SECRET")
    data = data.replace(b"20261002", b"SECRET12").replace(
        SERIES_A.encode(), b"1.2.SECRET" + b"9" * 19
    )
    with caplog.at_level("DEBUG"):
        facts = read_dicom_facts(io.BytesIO(data))
    assert facts is not None and facts.study_date is None
    assert "SECRET" not in caplog.text
    assert not [w for w in recwarn if "SECRET" in str(w.message)]


# --- the hook -----------------------------------------------------------------------------------


def test_hook_consilium_inspect_document(tmp_path: Path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None))
    hook = host.inspect_document  # the plugin that owns the specialty, as core calls it
    radiology, general = host.specialty("radiology"), host.specialty("general")
    good, opened = make_instance(), []

    def opener(data: bytes):
        def open_file() -> io.BytesIO:
            opened.append(io.BytesIO(data))
            return opened[-1]

        return open_file

    expected = read_dicom_facts(io.BytesIO(good))
    assert expected is not None
    # The study is the group core shows as one line, labelled without the image count.
    grouping = {"group": expected.study_uid, "group_label": "CT chest, 2 Oct 2026"}
    assert hook(specialty=radiology, kind="dicom", open_file=opener(good)) == DocumentFacts(
        checklist_item="images", facts={**expected.as_dict(), **grouping}
    )
    assert all(f.closed for f in opened)
    bad = hook(
        specialty=radiology, kind="dicom", open_file=opener(good[: good.index(b"Doe^Jane") + 3])
    )
    assert bad is not None
    assert (bad.checklist_item, bad.flags) == (None, ("malformed DICOM",))
    assert bad.facts["problem"]
    directory = make_instance(sop_class=MediaStorageDirectoryStorage)
    assert hook(specialty=radiology, kind="dicom", open_file=opener(directory)) is None
    assert hook(specialty=radiology, kind="pdf", open_file=opener(b"%PDF-1.7")) is None
    assert hook(specialty=general, kind="dicom", open_file=opener(good)) is None


def test_hook_consilium_describe_records(tmp_path: Path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None))
    describe = host.describe_records  # the plugin that owns the specialty, as core calls it
    radiology, general = host.specialty("radiology"), host.specialty("general")

    def facts_of(data: bytes) -> dict[str, str]:
        found = host.inspect_document(radiology, "dicom", lambda: io.BytesIO(data))
        assert found is not None
        return found.facts

    # The facts the inspect hook stored, handed back for one study: two series, the same image
    # twice (counted once), and a file that names another patient.
    stored = [
        facts_of(make_instance(1, series_number=2)),
        facts_of(make_instance(1, series_number=2)),
        facts_of(make_instance(2, series_number=2)),
        facts_of(make_instance(1, series=SERIES_B, series_number=5, PatientName="Roe^Ann")),
    ]
    detail = describe(specialty=radiology, facts=stored)
    assert isinstance(detail, RecordsDetail)
    assert detail.lines == (
        "Patients in the headers: Doe, Jane (ID MRN-0042); Roe, Ann (ID MRN-0042)",
        "Series 2: Series 2, 2 images",
        "Series 5: Series 5, 1 image",
    )
    assert detail.warnings == (
        "These files name more than one patient: check them before the study is read.",
    )
    one = describe(specialty=radiology, facts=stored[:1])
    assert one is not None and not one.warnings
    assert one.lines[0] == "Patient in the headers: Doe, Jane (ID MRN-0042)"
    # Nothing to say about files that are not DICOM, nor for another specialty.
    assert describe(specialty=radiology, facts=[{}]) is None
    assert describe(specialty=general, facts=stored) is None


# --- through the app: upload, download and the case pages ---------------------------------------


async def radiology_case(client) -> str:
    from tests.test_documents import new_case

    _, uid = await new_case(client, f"dicom-{uuid.uuid4().hex[:8]}@example.com", "radiology")
    return uid


async def send(client, uid: str, name: str, data: bytes) -> None:
    from tests.test_documents import upload

    response = await upload(client, uid, name, data, token_in="header")
    assert response.status_code == 303, response.text


async def staff_page(running_app, uid: str) -> str:
    from tests.conftest import open_client
    from tests.support import make_person, sign_in

    async with open_client(running_app) as staff:
        await sign_in(staff, await make_person("coordinator"))
        response = await staff.get(f"/staff/cases/{uid}")
        assert response.status_code == 200, response.text
        return response.text


async def test_program_header_in_the_preamble_is_zeroed_through_http(client) -> None:
    original = bundled("CT_small.dcm").read_bytes()
    data = b"MZ" + b"\x90" * 126 + original[128:]  # CVE-2019-11687: a DICOM that is also a PE
    uid = await radiology_case(client)
    await send(client, uid, "IM0001", data)
    [doc] = await Document.objects()
    assert doc.kind == "dicom" and doc.size == len(data)
    download = await client.get(f"/cases/{uid}/documents/{doc.uid}")
    assert download.status_code == 200
    assert download.content[:128] == bytes(128)
    assert download.content[128:] == original[128:]


async def test_malformed_dicom_is_stored_and_flagged_on_the_case_page(client) -> None:
    good = make_instance()
    uid = await radiology_case(client)
    await send(client, uid, "IM0002", good[: good.index(b"Doe^Jane") + 3])  # cut short
    [doc] = await Document.objects()
    assert doc.kind == "dicom" and "malformed DICOM" in json.loads(doc.flags)
    page = (await client.get(f"/cases/{uid}")).text
    assert "IM0002" in page and "could not be read as DICOM" in page
    # A good file gets no such note.
    await send(client, uid, "IM0003", good)
    page = (await client.get(f"/cases/{uid}")).text
    assert page.count("could not be read as DICOM") == 1


def two_series(**extra: object) -> bytes:
    """One MRI study: series 2 "AX T2" with 3 images, series 5 "SAG T1" with 2, zipped."""
    from tests.test_documents import zipped

    members = {}
    for series, number, description, count in (
        (SERIES_A, 2, "AX T2", 3),
        (SERIES_B, 5, "SAG T1", 2),
    ):
        for image in range(1, count + 1):
            members[f"DICOM/S{number}/IM{image}"] = make_instance(
                image,
                series=series,
                series_number=number,
                modality="MR",
                sop_class=MRImageStorage,
                **{"SeriesDescription": description, **extra},
            )
    return zipped(members)


async def test_staff_see_who_the_headers_name_and_the_series(client, running_app) -> None:
    uid = await radiology_case(client)
    await send(client, uid, "mri.zip", two_series())
    staff = await staff_page(running_app, uid)
    assert "MRI chest, 2 Oct 2026, 5 images" in staff
    assert "Patient in the headers: Doe, Jane (ID MRN-0042)" in staff
    assert staff.index("Series 2: AX T2, 3 images") < staff.index("Series 5: SAG T1, 2 images")
    assert "more than one patient" not in staff
    # The patient sees the same one line as before, without the header detail.
    own = (await client.get(f"/cases/{uid}")).text
    assert "MRI chest, 2 Oct 2026, 5 images" in own
    assert "MRN-0042" not in own and "Series 2" not in own and "Doe, Jane" not in own


async def test_header_text_is_escaped_for_staff(client, running_app) -> None:
    uid = await radiology_case(client)
    hostile = two_series(
        PatientName="<script>alert(1)</script>",
        PatientID="<img src=x onerror=alert(2)>",
        SeriesDescription="<script>alert(3)</script>",
    )
    await send(client, uid, "mri.zip", hostile)
    staff = await staff_page(running_app, uid)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in staff
    assert "&lt;img src=x onerror=alert(2)&gt;" in staff
    assert "Series 2: &lt;script&gt;alert(3)&lt;/script&gt;, 3 images" in staff
    assert "<script>alert" not in staff and "<img src=x" not in staff

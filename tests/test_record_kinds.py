"""What a specialty declares about records is enforced: the kinds it takes at upload, the kinds
each checklist item takes, the upload box's wording; what plugins flag reaches staff only."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file

from core.documents.tables import Document
from core.roles import COORDINATOR
from tests.conftest import open_client
from tests.support import make_person, sign_in
from tests.test_documents import files_under, new_case, text_of, upload, zipped

DICOM = Path(get_testdata_file("CT_small.dcm")).read_bytes()
SMALL_PDF = b"%PDF-1.7\n" + b"x" * 2048 + b"\n%%EOF\n"
GENERAL_TAKES = "PDFs or photos (JPEG, PNG, HEIC or WebP)"


async def test_a_kind_the_specialty_does_not_take_is_refused_with_a_sentence(
    client, settings
) -> None:
    _, uid = await new_case(client, "kinds@example.com", "general")
    refused = await upload(client, uid, "ct.dcm", DICOM)
    assert refused.status_code == 415
    assert f"A general second opinion takes {GENERAL_TAKES}, not DICOM images." in text_of(
        refused.text
    )
    assert await Document.count() == 0
    assert files_under(settings.var_dir / "documents" / "objects") == []
    # A specialty that takes DICOM keeps it.
    _, radiology = await new_case(client, "kinds-rad@example.com", "radiology")
    assert (await upload(client, radiology, "ct.dcm", DICOM)).status_code == 303


async def test_a_zip_keeps_what_the_specialty_takes_and_says_what_it_left_out(client) -> None:
    _, uid = await new_case(client, "kinds-zip@example.com", "general")
    response = await upload(client, uid, "mixed.zip", zipped({"a.pdf": SMALL_PDF, "b.dcm": DICOM}))
    assert response.status_code == 303
    kept = await Document.objects().where(Document.status == "complete")
    assert [doc.display_name for doc in kept] == ["a.pdf"]
    page = text_of((await client.get(f"/cases/{uid}")).text)
    assert "b.dcm" in page and "not DICOM images" in page


async def test_a_record_ticks_a_checklist_item_only_of_a_kind_it_takes(client) -> None:
    # Radiology's "images" item takes DICOM only: a PDF chosen for it does not tick it.
    _, uid = await new_case(client, "kinds-tick@example.com", "radiology")
    assert (await upload(client, uid, "scan.pdf", SMALL_PDF, checklist_item="images")).status_code
    pdf = await Document.objects().first()
    assert pdf.checklist_item is None
    await upload(client, uid, "ct.dcm", DICOM, checklist_item="images")
    dicom = await Document.objects().where(Document.kind == "dicom").first()
    assert dicom.checklist_item == "images"


async def test_the_upload_box_says_what_the_specialty_takes(client) -> None:
    _, general = await new_case(client, "kinds-box@example.com", "general")
    page = text_of((await client.get(f"/cases/{general}")).text)
    assert f"You can upload {GENERAL_TAKES}, or a ZIP of them." in page
    _, radiology = await new_case(client, "kinds-box2@example.com", "radiology")
    page = text_of((await client.get(f"/cases/{radiology}")).text)
    assert "You can upload PDFs, photos (JPEG, PNG, HEIC or WebP) or DICOM images" in page


async def test_flags_on_a_record_reach_staff_and_not_the_patient(client, running_app) -> None:
    # A DICOM file whose preamble held a program header is stored cleared and flagged.
    _, uid = await new_case(client, "kinds-flag@example.com", "radiology")
    flagged = b"MZ" + DICOM[2:]
    assert (await upload(client, uid, "ct.dcm", flagged)).status_code == 303
    flag = "DICOM preamble held a program header and was cleared"
    assert flag not in (await client.get(f"/cases/{uid}")).text
    async with open_client(running_app) as staff:
        await sign_in(staff, await make_person(COORDINATOR, "kinds-coord@example.com"))
        assert flag in (await staff.get(f"/staff/cases/{uid}")).text

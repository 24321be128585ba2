"""A folder of scans (a CD) from "Choose a folder": upload.js sends it in batches, every file
arrives once, sending the same folder again stores nothing twice, and a batch refused half way
says which files are in and which to send again (issue 12)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pydicom
import pytest
from playwright.sync_api import Browser, Page, Route, expect
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from core.cases import service as cases
from core.documents.tables import Document
from tests.browser.conftest import (
    LiveServer,
    register_patient,
    run_async,
    screenshot,
    sign_in,
)
from tests.browser.test_records import start_request

CLOSED = "Records can no longer be added to this case."


def write_series(folder: Path, count: int) -> None:
    """`count` small, valid DICOM images of one CT series, each with its own UIDs."""
    (folder / "DICOM").mkdir(parents=True)
    image = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    for number in range(1, count + 1):
        image.StudyInstanceUID, image.SeriesInstanceUID = study, series
        image.SOPInstanceUID = generate_uid()
        image.file_meta.MediaStorageSOPInstanceUID = image.SOPInstanceUID
        image.InstanceNumber = number
        image.save_as(folder / "DICOM" / f"IM{number:05d}", enforce_file_format=True)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # the system's, left out by upload.js


def stored_documents(case_uid: str) -> list[Document]:
    async def query() -> list[Document]:
        case = await cases.get_case(case_uid)
        return await Document.objects().where(
            (Document.case == case.id) & (Document.status == "complete")
        )

    return run_async(query())


def shoot(page: Page, name: str) -> None:
    screenshot(page, name)  # into test-artifacts/, to look at


@pytest.fixture
def wide(browser: Browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    yield tab
    context.close()


def test_a_folder_of_1000_images_arrives_once_and_again_stores_nothing(
    live_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    folder = tmp_path / "CD"
    write_series(folder, 1000)
    sign_in(page, live_server, register_patient("folder-1000@example.com", "Sana Mirza"))
    case_url = start_request(page, live_server)
    page.goto(case_url)
    case_uid = case_url.rsplit("/", 1)[1]
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    started = time.monotonic()
    page.get_by_label("Choose a folder (for example a CD of scans)").set_input_files(str(folder))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_text(re.compile(r"CT, .*, 1,000 images"))).to_be_visible(timeout=60_000)
    first_pass = time.monotonic() - started
    docs = stored_documents(case_uid)
    assert len(docs) == 1000 and len({d.sha256 for d in docs}) == 1000
    assert len({d.display_name for d in docs}) == 1000  # .DS_Store was not sent
    # In batches far below the server's 1,000 files per request, not in one request.
    assert len(posts) >= 1000 // 25
    expect(page.get_by_text("Your files are uploaded and stored encrypted.")).to_be_visible()

    # The same folder again (a retry after a failure, or by mistake): nothing is stored twice.
    page.goto(case_url)  # without the notice, which the end of this upload shows again
    expect(page.get_by_text("Your files are uploaded and stored encrypted.")).to_have_count(0)
    posts.clear()
    started = time.monotonic()
    page.get_by_label("Choose a folder (for example a CD of scans)").set_input_files(str(folder))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_text("Your files are uploaded and stored encrypted.")).to_be_visible(
        timeout=60_000
    )
    second_pass = time.monotonic() - started
    assert posts, "the folder was not sent again"
    assert len(stored_documents(case_uid)) == 1000
    objects = [p for p in (live_server.settings.var_dir / "documents" / "objects").rglob("*")]
    assert len([p for p in objects if p.is_file()]) >= 1000
    print(f"1,000 files: first pass {first_pass:.1f} s, again {second_pass:.1f} s")


def test_a_batch_refused_half_way_says_what_is_in_and_what_to_send_again(
    live_server: LiveServer, page: Page, wide: Page, tmp_path: Path
) -> None:
    folder = tmp_path / "CD"
    write_series(folder, 120)
    (folder / "VIEWER").mkdir()
    for name in ("viewer.exe", "dicom.dll", "codec.dll"):  # a CD's viewer program
        (folder / "VIEWER" / name).write_bytes(b"MZ" + b"\0" * 600)
    (folder / "README.TXT").write_bytes(b"Insert the disc and run the viewer.\r\n" * 20)
    (folder / "AUTORUN.INF").write_bytes(b"[autorun]\r\nopen=VIEWER\\viewer.exe\r\n")
    email = register_patient("folder-refused@example.com", "Bilal Khan")
    sign_in(page, live_server, email)
    case_url = start_request(page, live_server)
    case_uid = case_url.rsplit("/", 1)[1]

    for tab, width in ((page, 390), (wide, 1280)):
        if tab is wide:
            sign_in(wide, live_server, email)
        tab.goto(case_url)
        upload_box = tab.locator("form.upload-form")
        upload_box.scroll_into_view_if_needed()
        shoot(tab, f"upload-box-{width}")

    # The third batch is refused as a whole (here: the case stopped taking records meanwhile).
    batches: list[Route] = []

    def third_refused(route: Route) -> None:
        batches.append(route)
        if len(batches) == 3:
            route.fulfill(status=409, content_type="text/plain", body=CLOSED)
        else:
            route.continue_()

    page.route("**/documents/", third_refused)
    page.get_by_label("Choose a folder (for example a CD of scans)").set_input_files(str(folder))
    page.get_by_role("button", name="Upload files").click()
    summary = page.locator("[data-upload-summary]")
    expect(summary).to_be_visible(timeout=30_000)
    expect(summary).to_be_focused()
    stored = len(stored_documents(case_uid))
    assert 0 < stored < 120
    said = summary.inner_text()
    assert f"{stored} of 125 files are in your records." in said
    # A file refused on its own, by name and why; the files of the refused batch and after it.
    assert "CD/AUTORUN.INF — We could not recognise this file." in said
    assert "Not sent: Records can no longer be added to this case." in said
    assert (
        f"{125 - stored - 1} files, from CD/DICOM/IM{stored + 1:05d} to CD/VIEWER/viewer.exe"
        in said
    )
    assert "not stored twice" in said
    assert "1 system file of the folder (such as .DS_Store or Thumbs.db) was left out" in said
    expect(page.get_by_role("button", name="Upload files")).to_be_enabled()
    expect(page.locator("progress.upload-progress")).to_be_hidden()
    page.locator("[data-upload-summary] details").first.evaluate("(d) => { d.open = true; }")
    shoot(page, "partly-refused-390")

    # The same folder again: what was stored is recognised, the rest goes in.
    page.unroute("**/documents/")
    page.get_by_label("Choose a folder (for example a CD of scans)").set_input_files(str(folder))
    page.get_by_role("button", name="Upload files").click()
    summary = page.locator("[data-upload-summary]")
    expect(summary).to_contain_text("120 of 125 files are in your records.", timeout=30_000)
    expect(summary).to_contain_text(f"{stored} of them were there already")
    said = summary.inner_text()
    assert "Programs cannot be uploaded." in said and "3 files" in said  # the CD's viewer
    assert "We could not recognise this file." in said and "2 files" in said  # .INF, .TXT
    assert len(stored_documents(case_uid)) == 120

    # The same at 1280 px, on another request, for the screenshot.
    wide.goto(live_server.url + "/dashboard")
    wide.goto(start_request(wide, live_server))
    refused_at: list[Route] = []

    def second_refused(route: Route) -> None:
        refused_at.append(route)
        if len(refused_at) == 2:
            route.fulfill(status=409, content_type="text/plain", body=CLOSED)
        else:
            route.continue_()

    wide.route("**/documents/", second_refused)
    wide.get_by_label("Choose a folder (for example a CD of scans)").set_input_files(str(folder))
    wide.get_by_role("button", name="Upload files").click()
    expect(wide.locator("[data-upload-summary]")).to_be_visible(timeout=30_000)
    wide.locator("[data-upload-summary]").scroll_into_view_if_needed()
    shoot(wide, "partly-refused-1280")


def test_a_folder_without_javascript(
    live_server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    """The browser's own form post with a whole folder (once a 500 past 50 files): all in, and
    the same folder again says so rather than storing it twice."""
    folder = tmp_path / "CD"
    write_series(folder, 80)
    (folder / "VIEWER.EXE").write_bytes(b"MZ" + b"\0" * 600)
    email = register_patient("folder-no-js@example.com", "Ayesha Noor")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, live_server, email)
        case_url = start_request(page, live_server)
        case_uid = case_url.rsplit("/", 1)[1]
        page.goto(case_url)
        page.get_by_label("Choose a folder (for example a CD of scans)").set_input_files(
            str(folder)
        )
        page.get_by_role("button", name="Upload files").click()
        expect(page.get_by_role("heading", name="Your upload")).to_be_visible(timeout=30_000)
        said = page.locator("[data-upload-result]").inner_text()
        assert "80 files uploaded and stored encrypted." in said
        assert "1 file was not stored:" in said
        assert "VIEWER.EXE — Programs cannot be uploaded." in said
        assert "1 system file of the folder (such as .DS_Store or Thumbs.db) was left out" in said
        assert len(stored_documents(case_uid)) == 80
        shoot(page, "no-javascript-result-390")
        page.get_by_role("link", name="See your records").click()
        expect(page.get_by_text(re.compile(r"CT, .*, 80 images"))).to_be_visible()

        page.get_by_label("Choose a folder (for example a CD of scans)").set_input_files(
            str(folder)
        )
        page.get_by_role("button", name="Upload files").click()
        said = page.locator("[data-upload-result]").inner_text()
        assert "80 files were already here, so we did not store them twice." in said
        assert len(stored_documents(case_uid)) == 80
    finally:
        context.close()

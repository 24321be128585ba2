"""A patient uploads a zipped CT study and a PDF, sends an upload link that works in another
browser, and downloads a file back bit-identical; every opening shows on their access page."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import LiveServer, register_patient, screenshot, sign_in
from tests.test_documents import PDF, dicom_series, zipped


@pytest.fixture(scope="module")
def patient(live_server: LiveServer) -> str:
    return register_patient("records-browser@example.com", "Hina Qureshi")


def test_records_upload_provider_link_and_download(
    live_server: LiveServer, page: Page, browser: Browser, patient: str, tmp_path: Path
) -> None:
    study = tmp_path / "ct-study.zip"
    study.write_bytes(zipped({f"DICOM/IM{i:04d}": d for i, d in enumerate(dicom_series(8))}))
    report = tmp_path / "radiology report.pdf"
    report.write_bytes(PDF)
    letter = tmp_path / "referral letter.pdf"
    letter.write_bytes(b"%PDF-1.4\nreferral\n%%EOF\n")

    sign_in(page, live_server, patient)
    page.get_by_role("link", name="Start a new request").click()
    page.get_by_label(re.compile(r"^\s*Radiology second opinion")).check()
    page.get_by_role("button", name="Start my request").click()
    case_path = "/cases/" + page.url.split("/requests/")[1].split("/")[0]
    page.goto(live_server.url + case_path)

    # Upload the zipped study, then the report (upload.js sends them with a progress bar).
    page.get_by_label("What are these files?").select_option("images")
    page.get_by_label("Choose files").set_input_files(str(study))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_text(re.compile(r"CT chest, 2 Oct 2026, 8 images"))).to_be_visible()
    page.get_by_label("Choose files").set_input_files(str(report))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name="radiology report.pdf", exact=True)).to_be_visible()
    screenshot(page, "records-phone")

    # A link for the patient's own doctor, opened in another browser without an account.
    page.get_by_label(re.compile("Who is it for")).fill("Dr Aslam, City Hospital")
    page.get_by_role("button", name=re.compile("link", re.I)).first.click()
    link = page.get_by_role("textbox", name="Upload link").input_value()
    assert "/upload/" in link
    provider = browser.new_context().new_page()
    provider.goto(link)
    expect(provider.get_by_role("heading", level=1)).to_contain_text("Records for request SO-")
    expect(provider.get_by_text("Hina Qureshi")).to_have_count(0)
    provider.get_by_label("Choose files").set_input_files(str(letter))
    provider.get_by_role("button", name="Send files").click()
    # upload.js puts the server's thank-you in place of the form, with the number of files.
    thanks = provider.get_by_role("heading", level=1)
    expect(thanks).to_have_text("Thank you — your files were received")
    expect(thanks).to_be_focused()
    expect(provider.get_by_text(re.compile(r"^1 file received for request SO-"))).to_be_visible()
    expect(provider.get_by_role("button", name="Send files")).to_have_count(0)
    assert "/upload/" in provider.url and "notice=" not in provider.url  # no reload
    provider.context.close()

    page.goto(live_server.url + case_path)
    expect(page.get_by_text("referral letter.pdf")).to_be_visible()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="radiology report.pdf", exact=True).click()
    downloaded = Path(download_info.value.path())
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == hashlib.sha256(PDF).hexdigest()

    page.get_by_role("link", name="See who opened your records").click()
    expect(page.get_by_text("Downloaded radiology report.pdf")).to_be_visible()


def start_request(page: Page, server: LiveServer) -> str:
    """A new radiology request; returns its case page's URL."""
    page.get_by_role("link", name="Start a new request").click()
    page.get_by_label(re.compile(r"^\s*Radiology second opinion")).check()
    page.get_by_role("button", name="Start my request").click()
    return server.url + "/cases/" + page.url.split("/requests/")[1].split("/")[0]


def test_plain_form_upload_without_javascript(
    live_server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    email = register_patient("records-no-js@example.com", "Amna Riaz")
    letter = tmp_path / "clinic letter.pdf"
    letter.write_bytes(b"%PDF-1.4\nclinic letter\n%%EOF\n")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        sign_in(page, live_server, email)
        case_url = start_request(page, live_server)
        page.goto(case_url)
        posts = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        page.get_by_label("Choose files").set_input_files(str(letter))
        page.get_by_role("button", name="Upload files").click()
        expect(page.get_by_role("link", name="clinic letter.pdf", exact=True)).to_be_visible()
        assert "notice=records-uploaded" in page.url
        # The browser's own form post, not upload.js (which adds its headers).
        [post] = posts
        assert post.url.endswith("/documents/")
        assert post.headers["content-type"].startswith("multipart/form-data")
        assert "x-upload-client" not in post.headers and "x-csrftoken" not in post.headers
    finally:
        context.close()


def test_upload_shows_its_progress(live_server: LiveServer, page: Page, tmp_path: Path) -> None:
    email = register_patient("records-progress@example.com", "Omar Sheikh")
    chunk = live_server.settings.upload_chunk_bytes
    scan = tmp_path / "MRI spine.pdf"
    scan.write_bytes(b"%PDF-1.7\n" + os.urandom(2 * chunk + 1000) + b"\n%%EOF\n")
    sign_in(page, live_server, email)
    page.goto(start_request(page, live_server))
    bar = page.locator("progress.upload-progress")
    expect(bar).to_be_hidden()

    held: list[Route] = []  # the second piece waits until the bar has been seen mid-upload
    page.route(
        "**/uploads/*/chunks/*",
        lambda route: (
            held.append(route)
            if route.request.url.endswith("/chunks/1") and not held
            else route.continue_()
        ),
    )
    page.get_by_label("Choose files").set_input_files(str(scan))
    page.get_by_role("button", name="Upload files").click()
    expect(bar).to_be_visible()
    expect(page.get_by_role("button", name="Upload files")).to_be_disabled()
    for _ in range(400):  # route handlers run while the page is waited on
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the second piece was never sent"
    percent = bar.evaluate("(el) => el.value")
    assert 0 < percent < 100, percent
    screenshot(page, "upload-progress-phone")
    held[0].continue_()
    expect(page.get_by_role("link", name="MRI spine.pdf", exact=True)).to_be_visible(timeout=30000)
    expect(bar).to_be_hidden()

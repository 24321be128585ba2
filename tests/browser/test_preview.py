"""A patient uploads a PDF and photos, then looks at them in the page: the PDF drawn by pdf.js
into canvases, the photos as images; without JavaScript the photo still shows and the PDF can
be downloaded; every look is listed on the patient's access page."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.browser.conftest import ARTIFACTS, LiveServer, register_patient, screenshot, sign_in
from tests.test_preview import make_pdf, make_png

ROOT = ARTIFACTS.parent
# A TrueType font to embed in the test PDF (pdf.js ships it; any TrueType font would do).
FONT = (ROOT / "static/vendor/pdfjs/standard_fonts/LiberationSans-Regular.ttf").read_bytes()
# The smallest lossless WebP (1×1), as feature tests use it.
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")

# The image's width once the browser has decoded it (decode() rejects a broken image).
DECODED_WIDTH = "img => img.decode().then(() => img.naturalWidth)"
# Share of a canvas's pixels that are not white, and of those that are the PDF's blue box.
PIXELS = """canvas => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0, blue = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    if (r < 240 || g < 240 || b < 240) inked++;
    if (b > 200 && r < 60 && g < 60) blue++;
  }
  const total = data.length / 4;
  return {inked: inked / total, blue: blue / total, width: canvas.width};
}"""


@pytest.fixture(scope="module")
def patient(live_server: LiveServer) -> str:
    return register_patient("preview-browser@example.com", "Sana Malik")


def serious_violations(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
        for v in results.response["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


def test_pdf_and_photos_are_shown_in_the_page(
    live_server: LiveServer, page: Page, browser: Browser, patient: str, tmp_path: Path
) -> None:
    files = {
        "discharge summary.pdf": make_pdf("Discharge summary", pages=2, font_file=FONT),
        "wound photo.png": make_png(320, 200, (200, 40, 40)),
        "rash.webp": WEBP,
        "damaged.pdf": b"%PDF-1.7\n" + b"not really a pdf " * 100,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    # CSP violations and script errors show up here; the viewer must cause none.
    problems: list[str] = []

    def note(message: ConsoleMessage) -> None:
        # The app has no favicon; that 404 is the browser's own request, not the viewer's.
        if message.type in ("error", "warning") and "/favicon.ico" not in message.location["url"]:
            problems.append(message.text)

    page.on("console", note)
    page.on("pageerror", lambda error: problems.append(str(error)))
    sign_in(page, live_server, patient)
    page.get_by_role("link", name="Start a new request").click()
    page.get_by_label(re.compile(r"^\s*General second opinion")).check()
    page.get_by_role("button", name="Start my request").click()
    case_path = "/cases/" + page.url.split("/requests/")[1].split("/")[0]
    page.goto(live_server.url + case_path)
    page.get_by_label("Choose files").set_input_files([str(tmp_path / n) for n in files])
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name="View discharge summary.pdf")).to_be_visible()
    screenshot(page, "preview-case-phone")

    # The PDF: both pages drawn into canvases, with the text and the blue box on them.
    page.get_by_role("link", name="View discharge summary.pdf").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("discharge summary.pdf")
    viewer = page.locator("[data-pdf-viewer]")
    expect(viewer).to_have_attribute("data-pdf-state", "rendered", timeout=20_000)
    expect(page.get_by_role("img", name="Page 1 of 2")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("2 pages.")
    canvases = page.locator("canvas.pdf-page")
    expect(canvases).to_have_count(2)
    for index in range(2):
        pixels = canvases.nth(index).evaluate(PIXELS)
        assert pixels["width"] > 300 and 0.03 < pixels["inked"] < 0.6, pixels
        assert pixels["blue"] > 0.03, pixels
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # fits a phone
    assert serious_violations(page) == []
    screenshot(page, "preview-pdf-phone")
    assert problems == []
    expect(page.get_by_role("link", name="Download discharge summary.pdf")).to_be_visible()

    # The photos: shown by <img>, decoded by the browser (WebP too).
    page.get_by_role("link", name=re.compile("Back to request")).click()
    page.get_by_role("link", name="View wound photo.png").click()
    image = page.get_by_role("img", name="wound photo.png")
    expect(image).to_be_visible()
    assert image.evaluate(DECODED_WIDTH) == 320
    assert serious_violations(page) == []
    screenshot(page, "preview-png-phone")
    # Opened on its own (a person opening the image's address): shown, inside the sandbox.
    preview_url = image.get_attribute("src")
    page.goto(live_server.url + preview_url)
    assert (
        page.evaluate("document.images[0].decode().then(() => document.images[0].naturalWidth)")
        == 320
    )
    page.go_back()
    page.go_back()
    page.get_by_role("link", name="View rash.webp").click()
    webp = page.get_by_role("img", name="rash.webp")
    expect(webp).to_be_visible()
    assert webp.evaluate(DECODED_WIDTH) == 1

    # A damaged PDF: the page says so and keeps the Download.
    page.go_back()
    page.get_by_role("link", name="View damaged.pdf").click()
    expect(page.locator("[data-pdf-viewer]")).to_have_attribute("data-pdf-state", "failed")
    expect(page.get_by_role("status")).to_contain_text("could not be shown here")
    expect(page.get_by_role("link", name="Download damaged.pdf")).to_be_visible()

    # Without JavaScript: the photo still shows, the PDF page offers the download.
    cookies = page.context.cookies()
    plain = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    plain.add_cookies(cookies)
    no_js = plain.new_page()
    no_js.goto(live_server.url + case_path)
    with no_js.expect_response(re.compile(r"/preview$")) as shown:
        no_js.get_by_role("link", name="View wound photo.png").click()
    assert shown.value.status == 200 and shown.value.header_value("content-type") == "image/png"
    no_js.goto(live_server.url + case_path)
    no_js.get_by_role("link", name="View discharge summary.pdf").click()
    expect(no_js.get_by_text("If it does not appear, download it")).to_be_visible()
    with no_js.expect_download() as download:
        no_js.get_by_role("link", name="Download discharge summary.pdf").click()
    assert Path(download.value.path()).read_bytes() == files["discharge summary.pdf"]
    screenshot(no_js, "preview-pdf-no-js")
    plain.close()

    page.goto(live_server.url + case_path + "/access")
    for name in files:
        expect(page.get_by_text(f"Viewed {name}").first).to_be_visible()
    # pdf.js fetched the PDF once (no range requests): one view, one audited read.
    expect(page.get_by_text("Viewed discharge summary.pdf")).to_have_count(1)
    screenshot(page, "preview-access-phone")
    expect(page.get_by_text("Downloaded discharge summary.pdf")).to_be_visible()

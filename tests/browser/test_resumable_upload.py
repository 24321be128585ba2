"""A large record goes up in chunks: a dropped connection is waited out and the upload goes on;
after a reload, choosing the same file again resumes it instead of starting over."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import LiveServer, register_patient, screenshot, sign_in

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def patient(live_server: LiveServer) -> str:
    return register_patient("resumable-browser@example.com", "Bilal Ahmed")


def big_pdf(path: Path, size: int) -> bytes:
    data = b"%PDF-1.7\n" + os.urandom(size - 16) + b"\n%%EOF\n"
    path.write_bytes(data)
    return data


def test_a_dropped_chunk_is_retried_and_a_reload_resumes(
    live_server: LiveServer, page: Page, patient: str, tmp_path: Path
) -> None:
    chunk = live_server.settings.upload_chunk_bytes
    sign_in(page, live_server, patient)
    page.get_by_role("link", name="Start a new request").click()
    page.get_by_label(re.compile(r"^\s*Radiology second opinion")).check()
    page.get_by_role("button", name="Start my request").click()
    case_url = live_server.url + "/cases/" + page.url.split("/requests/")[1].split("/")[0]
    page.goto(case_url)

    # 1. The connection drops once, in the middle of the second chunk.
    first = big_pdf(tmp_path / "MRI knee.pdf", 2 * chunk + 12345)
    puts: list[str] = []
    dropped: list[str] = []

    def drop_second_chunk_once(route: Route) -> None:
        puts.append(route.request.url)
        if route.request.url.endswith("/chunks/1") and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/uploads/*/chunks/*", drop_second_chunk_once)
    page.get_by_label("Choose files").set_input_files(str(tmp_path / "MRI knee.pdf"))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name="MRI knee.pdf", exact=True)).to_be_visible(timeout=30000)
    assert dropped, "the chunk was never dropped"
    assert [u.rsplit("/", 1)[1] for u in puts] == ["0", "1", "1", "2"]
    page.unroute("**/uploads/*/chunks/*")

    # 2. The connection goes away for good after the first chunk, and the person reloads.
    second = big_pdf(tmp_path / "CT chest.pdf", 2 * chunk + 99)
    sent: list[str] = []

    def only_the_first_chunk(route: Route) -> None:
        sent.append(route.request.url.rsplit("/", 1)[1])
        if route.request.url.endswith("/chunks/0"):
            route.continue_()
        else:
            route.abort("internetdisconnected")

    page.route("**/uploads/*/chunks/*", only_the_first_chunk)
    page.get_by_label("Choose files").set_input_files(str(tmp_path / "CT chest.pdf"))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_text(re.compile(r"connection was lost. Trying again"))).to_be_visible(
        timeout=20000
    )
    screenshot(page, "upload-waiting-phone")
    page.unroute("**/uploads/*/chunks/*")
    page.goto(case_url)
    resumed: list[str] = []
    page.route(
        "**/uploads/*/chunks/*",
        lambda route: (resumed.append(route.request.url.rsplit("/", 1)[1]), route.continue_()),
    )
    page.get_by_label("Choose files").set_input_files(str(tmp_path / "CT chest.pdf"))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name="CT chest.pdf", exact=True)).to_be_visible(timeout=30000)
    assert "0" in sent and resumed == ["1", "2"], (sent, resumed)

    # Both come back bit-identical.
    for name, data in (("MRI knee.pdf", first), ("CT chest.pdf", second)):
        with page.expect_download() as download_info:
            page.get_by_role("link", name=name, exact=True).click()
        got = Path(download_info.value.path()).read_bytes()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()

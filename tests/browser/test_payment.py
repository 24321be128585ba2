"""A patient adds the required record, pays with the sandbox provider, downloads the receipt and
sees their case "received" with its due date; the "received" email reaches a real SMTP server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from core import context
from core.accounts import service as accounts
from core.cases import service as cases
from tests.browser.conftest import (
    LiveServer,
    free_port,
    register_patient,
    run_async,
    screenshot,
    serving,
    sign_in,
)
from tests.payment_support import CHECKUP, with_checkup
from tests.test_notifications import SmtpServer


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[LiveServer]:
    with serving(
        tmp_path_factory.mktemp("pay"),
        prepare=with_checkup,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security="none",
    ) as live:
        yield live


async def _submitted_case(email: str) -> str:
    """A submitted checkup request (the wizard itself has its own browser test)."""
    patient = await accounts.get_user_by_email(email)
    case = await cases.start_request(patient, CHECKUP, ip=None)
    subject = {
        "subject_kind": ["self"],
        "subject_birth_date": ["1975-06-01"],
        "subject_sex": ["male"],
    }
    plugins = context.plugins()
    assert not await cases.save_subject(case, patient, subject)
    assert not await cases.save_intake(case, CHECKUP, plugins, {"diagnosis": ["Gallstones"]})
    assert not await cases.save_questions(case, {"question_1": ["Do I need surgery?"]})
    assert not await cases.save_preferred_doctor(case, {"preferred_doctor": ["none"]})
    assert not await cases.submit(case, patient, CHECKUP, plugins, ip=None)
    return str(case.uid)


# How many lines of `element` the first occurrence of `text` in it runs over.
LINES_OF_TEXT = """([selector, text]) => {
  const walker = document.createTreeWalker(document.querySelector(selector), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(text);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + text.length);
    return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
  }
  return 0;
}"""


def test_patient_pays_downloads_the_receipt_and_the_case_is_received(
    server: LiveServer, smtp: SmtpServer, page: Page, tmp_path: Path
) -> None:
    email = register_patient("payer@example.com", "Imran Siddiqui")
    uid = run_async(_submitted_case(email))
    letter = tmp_path / "clinic letter.pdf"
    letter.write_bytes(b"%PDF-1.4\nletter from the clinic\n%%EOF\n")

    sign_in(page, server, email)
    page.goto(f"{server.url}/cases/{uid}")
    # On a phone the heading wraps, but never inside the reference ("SO-" / "2026-00001").
    reference = page.locator("main h1").inner_text().split()[-1]
    assert reference.startswith("SO-")
    assert page.evaluate(LINES_OF_TEXT, ["main h1", reference]) == 1
    payment = page.locator("#payment")
    expect(payment).to_contain_text("The fee for this second opinion is PKR 4,500")

    page.get_by_label("What are these files?").select_option("letter")
    page.get_by_label("Choose files").set_input_files(str(letter))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name="clinic letter.pdf", exact=True)).to_be_visible()

    page.get_by_role("button", name="Pay online (test)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("no real money moves")
    page.get_by_role("button", name="Pay PKR 4,500 (test, succeeds)").click()

    expect(page.get_by_role("status").filter(has_text="payment service confirms")).to_be_visible()
    status = page.get_by_role("status").filter(has_text="Received for review")
    expect(status).to_contain_text("Your report is due by")
    expect(payment).to_contain_text("Paid")
    screenshot(page, "payment-received-phone")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the receipt (PDF)").click()
    receipt = tmp_path / "receipt.pdf"
    download_info.value.save_as(receipt)
    text = subprocess.run(
        ["pdftotext", str(receipt), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Payment receipt" in text and "PKR 4,500" in text and "Imran Siddiqui" in text

    deadline = time.monotonic() + 15
    subjects: list[str] = []
    while time.monotonic() < deadline:
        subjects = [str(r.message["subject"]) for r in smtp.received]
        if any("is received for review" in s for s in subjects):
            break
        time.sleep(0.1)
    assert any("is received for review" in s for s in subjects), subjects
    received = next(r for r in smtp.received if "received for review" in str(r.message["subject"]))
    assert received.rcpt_tos == [email]
    assert "Gallstones" not in received.message.get_content()  # no medical details by email

"""Issue 16's "Done when" in Chromium, continuing issue 15's journey from a signed review.

A radiologist signs a mammogram's review (through the services: the signing itself is issue
15's journey) → the patient is emailed, reads the report on a phone and downloads the signed
PDF, whose PAdES signature validates with pyHanko's validator → /verify says the PDF is
authentic and a copy with one byte changed is not → the radiologist signs an addendum, then an
amended report → the first PDF now verifies as superseded → the patient shares the report with
their own doctor, with an access code; the doctor opens it in another browser and the patient
sees the read receipt → the patient revokes the link and it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from core import context
from core.cases import service as cases
from core.reports import signing
from core.reports.tables import Report
from core.reviews import service as reviews
from tests.browser.conftest import (
    LiveServer,
    register_patient,
    run_async,
    screenshot,
    serving,
)
from tests.browser.test_assignment_journey import staff_page
from tests.browser.test_review_journey import (
    MAMMOGRAM,
    RADIOLOGY_INTAKE,
    RADIOLOGY_QUESTIONS,
    REPORT,
    _accept,
    _doctor,
    _submitted_with_records,
    fresh_code,
    pay,
    settled,
)
from tests.support import Person, link_in, read_mail

SUMMARY = "The lump needs a biopsy to be sure. Most lumps like this are not cancer."
CORRECTED = "The lump needs a biopsy within two weeks. Most lumps like this are not cancer."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("report")) as live:
        yield live


async def _review_and_sign(uid: str, doctor: Person, code: str) -> None:
    """What the radiologist typed and signed in issue 15's journey, through the services."""
    case = await cases.get_case(uid)
    app = context.current()
    specialty = app.plugins.specialty(case.specialty)
    space = await reviews.workspace(case, specialty)
    raw = {
        "materials": [m.value for m in space.materials],
        "study_quality": ["diagnostic"],
        "findings": [
            "Scattered fibroglandular density. An 11 mm irregular mass in the left upper outer "
            "quadrant. No suspicious calcifications."
        ],
        "breast_imaging": ["yes"],
        "birads": ["4A"],
        "impression": ["Suspicious left breast mass, BI-RADS 4A."],
        "recommendation": ["Ultrasound-guided core biopsy of the left breast mass."],
        "answer_1": ["We cannot tell from the pictures alone; a biopsy will tell."],
        "answer_2": ["Yes. A needle biopsy is advised."],
        "agreement": ["agrees"],
        "concordance": ["agree"],
        "management_change": ["no"],
        "patient_summary": [SUMMARY],
    }
    draft = await reviews.save_draft(case, doctor.user, raw, 0, ip=None)
    case = await cases.get_case(uid)
    await reviews.sign(
        case,
        doctor.user,
        space,
        app.plugins,
        version=draft.version,
        password=doctor.password,
        code=code,
        confirmed=True,
        ip=None,
    )


async def _number(uid: str) -> str:
    case = await cases.get_case(uid)
    return (await Report.objects().where(Report.case == case.id).first()).number


def _validate(pdf: bytes, cert: bytes) -> signing.Validation:
    # pyHanko's validator runs its own event loop: not on Playwright's thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(signing.validate_pdf, pdf, cert).result()


def verify(browser: Browser, server: LiveServer, number: str, pdf: Path) -> str:
    """A stranger (no account) checks a PDF on /verify; the answer's heading."""
    tab = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    tab.goto(server.url + "/verify")
    tab.get_by_label("Report number").fill(number)
    tab.get_by_label("The report's PDF file").set_input_files(str(pdf))
    tab.get_by_role("button", name=re.compile("Check")).click()
    answer = tab.locator("#verdict .notice-title").inner_text()
    tab.context.close()
    return answer


def sign_with(tab: Page, doctor: Person, button: str) -> None:
    tab.get_by_label("Your password").fill(doctor.password)
    tab.get_by_label("Code from your authenticator app").fill(fresh_code(doctor))
    tab.get_by_label(re.compile("This is my opinion")).check()
    tab.get_by_role("button", name=button).click()


def test_the_patient_reads_verifies_and_shares_a_signed_report_through_its_corrections(
    server: LiveServer, browser: Browser, page: Page, tmp_path: Path
) -> None:
    doctor = run_async(
        _doctor(
            "rad.report@example.com",
            "Dr Zainab Rizvi",
            "radiology",
            "Consultant radiologist",
            "44120-P",
            "breast",
        )
    )
    email = register_patient("report.patient@example.com", "Saima Akhtar")
    records = {name: (data, "images") for name, data in MAMMOGRAM.items()}
    records["report.pdf"] = (REPORT, "report")
    uid = run_async(
        _submitted_with_records(
            email, "radiology", RADIOLOGY_INTAKE, RADIOLOGY_QUESTIONS, doctor, records
        )
    )
    pay(page, server, email, uid, "Received for review")
    run_async(_accept(uid, doctor))
    run_async(_review_and_sign(uid, doctor, fresh_code(doctor)))
    number = run_async(_number(uid))

    # The patient is emailed (no medical text) and reads the report on their phone.
    [mail] = [m for m in run_async(read_mail(server.settings)) if "is ready" in m["Subject"]]
    assert mail["To"] == email and SUMMARY not in mail.get_content()
    page.goto(server.url + link_in(mail, "/cases/"))
    screenshot(page, "report-patient-case-phone")
    page.get_by_role("link", name="Read your report").click()
    report = page.locator("article.report")
    expect(report.get_by_role("heading", name="What this means for you")).to_be_visible()
    expect(report).to_contain_text(SUMMARY)
    expect(report).to_contain_text("This second opinion agrees with the first opinion")
    expect(report).to_contain_text("BI-RADS")  # explained under "Words used in this report"
    expect(report).to_contain_text("44120-P")
    screenshot(page, "report-patient-phone")
    with page.expect_download() as downloaded:
        page.get_by_role("link", name="Download the signed PDF").click()
    first = tmp_path / "first.pdf"
    downloaded.value.save_as(first)
    cert = signing.load_material(server.settings).cert_pem
    check = _validate(first.read_bytes(), cert)
    assert check.intact and check.valid and check.trusted

    # /verify: the PDF as issued is authentic; one byte changed is not.
    assert verify(browser, server, number, first) == "Authentic: this is the current version"
    changed = bytearray(first.read_bytes())
    changed[len(changed) // 3] ^= 0x01
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(changed))
    assert not _validate(bytes(changed), cert).intact
    assert verify(browser, server, number, tampered) == "Not a report we issued"

    # The radiologist adds a late result, then corrects the report.
    tab = staff_page(browser, server, doctor)
    tab.goto(f"{server.url}/doctor/cases/{uid}/review")
    expect(tab.locator("#report")).to_contain_text(f"Report {number}")
    tab.get_by_text("Write an addendum", exact=True).click()
    screenshot(tab, "report-doctor-addendum")
    tab.get_by_label("What is new").fill("The ultrasound of 9 December arrived.")
    tab.get_by_role("textbox", name="Addendum").fill(
        "Ultrasound: an 11 mm hypoechoic solid mass; the biopsy advice stands."
    )
    sign_with(tab, doctor, "Sign the addendum")
    expect(tab.get_by_text("The addendum is signed.")).to_be_visible()
    tab.get_by_role("button", name="Correct the report (amended report)").click()
    expect(tab.get_by_text("You are correcting the signed report")).to_be_visible()
    summary = tab.get_by_label("What this means for you")
    expect(summary).to_have_value(SUMMARY)
    screenshot(tab, "report-doctor-amending")
    summary.fill(CORRECTED)
    tab.get_by_label("Why is the report amended?").fill(
        "The summary did not say how soon the biopsy should be."
    )
    tab.get_by_label("Who was told of the correction").fill("The patient, by phone, 10 Dec 2026.")
    settled(tab)
    tab.get_by_role("button", name="Preview and sign").click()
    expect(tab.get_by_role("heading", name=re.compile("amended report"))).to_be_visible()
    sign_with(tab, doctor, "Sign the amended report")
    expect(tab.get_by_text("The amended report is signed.")).to_be_visible()
    screenshot(tab, "report-doctor-after-amendment")
    tab.context.close()

    # The first PDF is still authentic, but superseded.
    assert verify(browser, server, number, first) == "Authentic, but superseded"
    mails = [m for m in run_async(read_mail(server.settings)) if "new version" in m["Subject"]]
    assert len(mails) == 2

    # The patient reads the current version, then shares it with their own doctor.
    page.goto(f"{server.url}/cases/{uid}/report")
    expect(report).to_contain_text("Amended report (version 3)")
    expect(report).to_contain_text(CORRECTED)
    expect(report).to_contain_text("the biopsy advice stands")
    page.get_by_label("Who is it for?").fill("Dr Aslam, City Hospital")
    page.get_by_label("Protect with an access code").check()
    page.get_by_role("button", name="Make the link").click()
    link = page.get_by_label("Link to your report").input_value()
    code = page.get_by_role("textbox", name="Access code").input_value()
    screenshot(page, "report-share-created-phone")
    assert re.fullmatch(r"\d{6}", code)

    their = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    their.goto(link)
    expect(their.get_by_role("heading", name="Enter the access code")).to_be_visible()
    expect(their.locator("body")).not_to_contain_text(CORRECTED)
    their.set_viewport_size({"width": 390, "height": 844})
    screenshot(their, "report-shared-code-phone")
    their.set_viewport_size({"width": 1280, "height": 900})
    their.get_by_role("textbox", name="Access code").fill(code)
    their.get_by_role("button", name="Open the report").click()
    expect(their.locator("article.report")).to_contain_text(CORRECTED)
    screenshot(their, "report-shared-doctor")

    page.goto(f"{server.url}/cases/{uid}/report#share")
    screenshot(page, "report-patient-receipts-phone")
    expect(page.locator("#share")).to_contain_text(re.compile(r"Opened \d+ \w+ \d{4} \d\d:\d\d"))
    page.get_by_role("button", name=re.compile("Revoke")).click()
    their.reload()
    expect(their.get_by_role("heading", name="This link is not valid")).to_be_visible()
    their.context.close()

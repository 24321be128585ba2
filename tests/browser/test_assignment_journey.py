"""Issue 13's journeys in Chromium.

First: a patient pays with their records in → the case is offered to the doctor they preferred
→ that doctor reads the patient, the answers, the questions and the records, declares no
conflict and accepts → a coordinator moves it with a reason → the new doctor accepts and the
first gets "not found" → the new doctor hands it back → it waits in "To assign". Second: the
preferred doctor is out of office, another doctor of the specialty takes the case, and the
patient's page says so kindly. Staff sign in through the form with their second factor, as
people do."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from core import context
from core.accounts import service as accounts
from core.accounts.tables import DoctorSpecialty
from core.cases import service as cases
from tests.browser.conftest import LiveServer, register_patient, run_async, serving, sign_in
from tests.payment_support import CHECKUP, with_checkup
from tests.support import Person, make_person


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("assign"), prepare=with_checkup) as live:
        yield live


async def _doctor(email: str, name: str) -> Person:
    person = await make_person("doctor", email)
    await DoctorSpecialty.insert(DoctorSpecialty(doctor=person.user.id, specialty="checkup"))
    from core.accounts.tables import User

    await User.update({User.full_name: name}).where(User.id == person.user.id)
    return person


async def _submitted_case(email: str, preferred: Person) -> str:
    patient = await accounts.get_user_by_email(email)
    case = await cases.start_request(patient, CHECKUP, ip=None)
    plugins = context.plugins()
    subject = {
        "subject_kind": ["self"],
        "subject_birth_date": ["1975-06-01"],
        "subject_sex": ["male"],
    }
    assert not await cases.save_subject(case, patient, subject)
    assert not await cases.save_intake(case, CHECKUP, plugins, {"diagnosis": ["Gallstones"]})
    assert not await cases.save_questions(case, {"question_1": ["Do I need surgery?"]})
    chosen = {"preferred_doctor": [str(preferred.user.uid)]}
    assert not await cases.save_preferred_doctor(case, chosen)
    assert not await cases.submit(case, patient, CHECKUP, plugins, ip=None)
    return str(case.uid)


def staff_page(browser: Browser, server: LiveServer, person: Person) -> Page:
    """A browser of its own, signed in through the form with a TOTP code."""
    tab = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    tab.goto(server.url + "/login")
    tab.get_by_label("Email address").fill(person.email)
    tab.get_by_label("Password").fill(person.password)
    tab.get_by_role("button", name="Sign in").click()
    tab.get_by_label("Code").fill(person.next_code())
    tab.get_by_role("button", name="Continue").click()
    expect(tab).to_have_url(re.compile(r"/dashboard"))
    return tab


def letter_and_pay(page: Page, server: LiveServer, email: str, uid: str, letter: Path) -> None:
    """The patient signs in, uploads the required letter and pays: the case is received."""
    letter.write_bytes(b"%PDF-1.4\nletter from " + letter.name.encode() + b"\n%%EOF\n")
    sign_in(page, server, email)
    page.goto(f"{server.url}/cases/{uid}")
    page.get_by_label("What are these files?").select_option("letter")
    page.get_by_label("Choose files").set_input_files(str(letter))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name=letter.name, exact=True)).to_be_visible()
    page.get_by_role("button", name="Pay online (test)").click()
    page.get_by_role("button", name=re.compile(r"^Pay PKR .* succeeds")).click()
    expect(page.get_by_role("status").filter(has_text="Received for review")).to_be_visible()


def test_offer_accept_move_hand_back(
    server: LiveServer, browser: Browser, page: Page, tmp_path: Path
) -> None:
    first = run_async(_doctor("first.journey@example.com", "Dr Sana Qureshi"))
    second = run_async(_doctor("second.journey@example.com", "Dr Omar Farooq"))
    coordinator = run_async(make_person("coordinator", "coord.journey@example.com"))
    email = register_patient("journey.patient@example.com", "Imran Siddiqui")
    uid = run_async(_submitted_case(email, first))

    # The patient adds the letter and pays: received, and offered at once to Dr Qureshi.
    letter_and_pay(page, server, email, uid, tmp_path / "clinic letter.pdf")

    # Dr Qureshi sees the offer, reads the case and accepts it.
    doctor = staff_page(browser, server, first)
    doctor.goto(server.url + "/dashboard")
    expect(doctor.get_by_text("Offered to you", exact=True)).to_be_visible()
    doctor.get_by_role("link", name=re.compile(r"SO-\d{4}-\d{5}")).click()
    for seen in ("Gallstones", "Do I need surgery?", "clinic letter.pdf", "Male"):
        expect(doctor.get_by_text(seen).first).to_be_visible()
    doctor.get_by_role("button", name="Accept the case").click()
    expect(
        doctor.get_by_text("Confirm that you have no conflict of interest").first
    ).to_be_visible()
    doctor.get_by_label(re.compile("I have no conflict of interest")).check()
    doctor.get_by_role("button", name="Accept the case").click()
    expect(doctor.get_by_text("You have accepted this case")).to_be_visible()

    # The patient's page names the specialist.
    page.goto(f"{server.url}/cases/{uid}")
    expect(page.locator("#specialist")).to_contain_text("Dr Sana Qureshi")

    # A coordinator moves it to Dr Farooq, with a reason.
    staff = staff_page(browser, server, coordinator)
    staff.goto(f"{server.url}/staff/cases/{uid}")
    expect(staff.locator("#doctor")).to_contain_text("Accepted by Dr Sana Qureshi")
    staff.get_by_label("New doctor").select_option(str(second.user.uid))
    staff.get_by_label("Why it moves").fill("Dr Qureshi is needed on another ward this week")
    staff.get_by_role("button", name="Move the case").click()
    expect(staff.get_by_text("The case is offered to the new doctor")).to_be_visible()

    # Dr Qureshi can no longer open it; Dr Farooq accepts, then hands it back.
    assert doctor.goto(f"{server.url}/doctor/cases/{uid}").status == 404
    new_doctor = staff_page(browser, server, second)
    new_doctor.goto(f"{server.url}/doctor/cases/{uid}")
    new_doctor.get_by_label(re.compile("I have no conflict of interest")).check()
    new_doctor.get_by_role("button", name="Accept the case").click()
    expect(new_doctor.get_by_text("You have accepted this case")).to_be_visible()
    new_doctor.get_by_label("Why you are handing it back").fill("A family emergency")
    new_doctor.get_by_role("button", name="Hand the case back").click()
    expect(new_doctor.get_by_text("You handed the case back")).to_be_visible()

    # It waits for the coordinators, with its history.
    staff.goto(f"{server.url}/staff/cases?queue=received")
    expect(staff.get_by_role("link", name=re.compile(r"SO-\d{4}-\d{5}"))).to_be_visible()
    staff.goto(f"{server.url}/staff/cases/{uid}")
    history = staff.locator("#doctor")
    expect(history).to_contain_text("Nobody has this case.")
    expect(history).to_contain_text("moved to another doctor by a coordinator")
    expect(history).to_contain_text("handed back")
    for tab in (doctor, staff, new_doctor):
        tab.context.close()


def test_a_preferred_doctor_away_means_another_doctor_and_the_patient_is_told(
    server: LiveServer, browser: Browser, page: Page, tmp_path: Path
) -> None:
    away = run_async(_doctor("away.journey@example.com", "Dr Hina Baig"))
    other = run_async(_doctor("other.journey@example.com", "Dr Kamran Ali"))

    async def away_today() -> None:
        from core import clock
        from core.accounts.tables import DoctorAway

        today = clock.local_date(clock.now(), server.settings.time_zone)
        await DoctorAway.insert(
            DoctorAway(uid=uuid.uuid4(), doctor=away.user.id, first_day=today, last_day=today)
        )

    email = register_patient("journey.away@example.com", "Nadia Hussain")
    uid = run_async(_submitted_case(email, away))  # chosen before the doctor went away
    run_async(away_today())
    letter_and_pay(page, server, email, uid, tmp_path / "letter.pdf")

    # Offered to the other doctor of the specialty, who accepts.
    doctor = staff_page(browser, server, other)
    doctor.goto(f"{server.url}/doctor/cases/{uid}")
    expect(doctor.get_by_text("This case is offered to you.")).to_be_visible()
    doctor.get_by_label(re.compile("I have no conflict of interest")).check()
    doctor.get_by_role("button", name="Accept the case").click()
    expect(doctor.get_by_text("You have accepted this case")).to_be_visible()
    doctor.context.close()

    page.goto(f"{server.url}/cases/{uid}")
    specialist = page.locator("#specialist")
    expect(specialist).to_contain_text("Dr Kamran Ali")
    expect(specialist).to_contain_text("Dr Hina Baig could not take your case this time")


PATHOLOGY_INTAKE = {
    "report_kind": ["biopsy"],
    "specimen_type": ["core_needle"],
    "specimen_site": ["Left breast"],
    "collection_date": ["2026-10-02"],
    "lab_name": ["Central Pathology Laboratory"],
    "original_result": ["Invasive ductal carcinoma, Nottingham grade 2"],
    "tests_done": ["he", "ihc"],
    "material_available": ["yes"],
    "diagnostic_question": ["Is the grade right?"],
}


async def _pathology_case(email: str) -> str:
    patient = await accounts.get_user_by_email(email)
    plugins = context.plugins()
    pathology = plugins.specialty("pathology")
    case = await cases.start_request(patient, pathology, ip=None)
    subject = {
        "subject_kind": ["self"],
        "subject_birth_date": ["1968-03-09"],
        "subject_sex": ["female"],
    }
    assert not await cases.save_subject(case, patient, subject)
    assert not await cases.save_intake(case, pathology, plugins, PATHOLOGY_INTAKE)
    assert not await cases.save_questions(case, {"question_1": ["Is the grade right?"]})
    assert not await cases.save_preferred_doctor(case, {"preferred_doctor": ["none"]})
    assert not await cases.submit(case, patient, pathology, plugins, ip=None)
    return str(case.uid)


def test_a_biopsy_case_waits_for_its_slides_until_a_coordinator_records_them(
    server: LiveServer, browser: Browser, page: Page, tmp_path: Path
) -> None:
    coordinator = run_async(make_person("coordinator", "coord.slides@example.com"))
    email = register_patient("journey.slides@example.com", "Ayesha Malik")
    uid = run_async(_pathology_case(email))
    report = tmp_path / "histology report.pdf"
    report.write_bytes(b"%PDF-1.4\nhistology report\n%%EOF\n")

    # The patient sends the report and pays: the case still waits for the slides, and the page
    # says where to send them and what to write on the package.
    sign_in(page, server, email)
    page.goto(f"{server.url}/cases/{uid}")
    page.get_by_label("What are these files?").select_option("report")
    page.get_by_label("Choose files").set_input_files(str(report))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name=report.name, exact=True)).to_be_visible()
    page.get_by_role("button", name="Pay online (test)").click()
    page.get_by_role("button", name=re.compile(r"^Pay PKR .* succeeds")).click()
    status = page.locator("#case-status")
    expect(status).to_contain_text("Submitted")
    expect(status).to_contain_text("reaches us by post: The original glass slides")
    posted = page.locator("#materials")
    expect(posted).to_contain_text("The original glass slides")
    expect(posted).to_contain_text("Pathology Reception")
    reference = page.locator("h1 .reference").inner_text()
    expect(posted.locator(".reference")).to_have_text(reference)

    # A coordinator records the package; only then is the case received.
    staff = staff_page(browser, server, coordinator)
    staff.goto(f"{server.url}/staff/cases/{uid}")
    materials = staff.locator("#materials")
    expect(materials).to_contain_text("Needed before the review can start")
    materials.get_by_label("What arrived").select_option("slides")
    materials.get_by_label("How many").fill("3")
    materials.get_by_label("Labels on them").fill("S26-0042 A1–A3")
    materials.get_by_role("button", name="Record the arrival").click()
    expect(staff.get_by_text("The arrival is recorded.")).to_be_visible()
    expect(staff.locator(".status").first).to_have_text("Received for review")
    expect(staff.locator("#materials")).to_contain_text("S26-0042 A1–A3")
    staff.context.close()

    page.goto(f"{server.url}/cases/{uid}")
    expect(status).to_contain_text("Received for review")
    expect(page.locator("#materials")).to_contain_text("Arrived")

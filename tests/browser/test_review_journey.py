"""Issue 15's "Done when" in Chromium: the doctor's structured review, for radiology and for
pathology.

Each journey: an accepted case → the doctor opens the review workspace from their queue and fills
the specialty's form (radiology: a lesion, breast imaging and its BI-RADS category shown by the
show-if rule; pathology: the basis, a limited specimen and the reason it then asks for) → the
radiologist downloads the whole study as one ZIP → the doctor asks the patient a question → the
patient (on a phone) answers on their case page, with a file → a colleague invited by email
reads the case, opens a record and concurs → the doctor sees both, answers each of the patient's
questions, states agreement, writes "What this means for you", previews and signs with password
and authenticator code: a wrong code is refused, a good one signs, and the colleague's access
ends. Set-up that is not the subject (people, the submitted request and its first records, the
slides arriving, accepting the offer) goes through the services.
"""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from core import context
from core.accounts import service as accounts
from core.accounts.tables import DoctorProfile, DoctorSpecialty, User
from core.assignment import service as assignment
from core.cases import service as cases
from core.cases import states
from core.completeness import service as completeness
from core.documents import service as documents
from tests.browser.conftest import (
    LiveServer,
    register_patient,
    run_async,
    screenshot,
    serving,
    sign_in,
)
from tests.browser.test_assignment_journey import PATHOLOGY_INTAKE, staff_page
from tests.support import Person, link_in, make_person, read_mail
from tests.test_dicom import make_instance

PMDC = "Pakistan Medical and Dental Council"
REPORT = b"%PDF-1.4\nthe first report\n%%EOF\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("review")) as live:
        yield live


# Set-up through the services ------------------------------------------------------------------


async def _doctor(
    email: str, name: str, specialty: str, title: str, number: str, *covers: str
) -> Person:
    """A doctor with TOTP and what a signed report states: title, registration, body; `covers`
    the subspecialties they read (the preferred doctor must cover the case's)."""
    person = await make_person("doctor", email, specialties=[specialty])
    await User.update({User.full_name: name}).where(User.id == person.user.id)
    await DoctorSpecialty.update({DoctorSpecialty.subspecialties: json.dumps(covers)}).where(
        DoctorSpecialty.doctor == person.user.id
    )
    await DoctorProfile.insert(
        DoctorProfile(
            doctor=person.user.id, title=title, registration_number=number, registering_body=PMDC
        )
    )
    person.user = await accounts.get_user(str(person.user.uid))  # type: ignore[assignment]
    return person


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _submitted_with_records(
    email: str,
    slug: str,
    intake: dict[str, list[str]],
    questions: tuple[str, ...],
    preferred: Person,
    records: dict[str, tuple[bytes, str]],
) -> str:
    """The patient's request, submitted with `preferred` chosen, and its first records stored
    (name → (content, checklist item)) as an upload stores them. Not paid yet."""
    patient = await accounts.get_user_by_email(email)
    assert patient is not None
    app = context.current()
    specialty = app.plugins.specialty(slug)
    case = await cases.start_request(patient, specialty, ip=None)
    subject = {
        "subject_kind": ["self"],
        "subject_birth_date": ["1971-04-12"],
        "subject_sex": ["female"],
    }
    assert not await cases.save_subject(case, patient, subject)
    assert not await cases.save_intake(case, specialty, app.plugins, intake)
    asked = {f"question_{n}": [q] for n, q in enumerate(questions, start=1)}
    assert not await cases.save_questions(case, asked)
    chosen = {"preferred_doctor": [str(preferred.user.uid)]}
    assert not await cases.save_preferred_doctor(case, chosen)
    assert not await cases.submit(case, patient, specialty, app.plugins, ip=None)
    for name, (data, item) in records.items():
        await documents.store_upload(
            app.records,
            await cases.get_case(str(case.uid)),
            filename=name,
            chunks=_chunks(data),
            uploader=patient,
            checklist_item=item,
            plugins=app.plugins,
            specialty=specialty,
        )
    return str(case.uid)


async def _slides_arrive(uid: str, coordinator: Person) -> None:
    case = await cases.get_case(uid)
    slides = {"material": "slides", "count": "3", "identifiers": "S26-0911 A1–A3"}
    specialty = context.plugins().specialty(case.specialty)
    await completeness.record_arrival(case, coordinator.user, slides, specialty, ip=None)


async def _accept(uid: str, doctor: Person) -> None:
    case = await cases.get_case(uid)
    assert (case.status, case.assigned_doctor) == (states.OFFERED, doctor.user.id)
    await assignment.accept(case, doctor.user, no_conflict=True, ip=None)


# What people do, and waiting for it ------------------------------------------------------------


def fresh_code(person: Person) -> str:
    """The next authenticator code the server still takes: each 30-s step works once, and
    Person.next_code reaches at most one step ahead, so wait for the next window when needed."""
    while person._steps and person._steps[-1] > int(time.time() // 30):
        time.sleep(30.05 - time.time() % 30)
    return person.next_code()


def wrong_code(person: Person) -> str:
    """Six digits that are none of the codes the server would take now."""
    assert person.totp_secret
    totp, now = pyotp.TOTP(person.totp_secret), int(time.time() // 30)
    taken = {totp.generate_otp(step) for step in range(now - 2, now + 3)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in taken)


def settled(tab: Page) -> None:
    """Wait out the autosave of the last keystroke (htmx: `input delay:1s`) and any save in
    flight, as a doctor pausing before a button does: a submit based on an older version is
    refused as another tab's."""
    tab.wait_for_timeout(1100)
    tab.wait_for_function("() => !document.querySelector('.htmx-request')")


def open_workspace(browser: Browser, server: LiveServer, doctor: Person) -> Page:
    """The doctor signs in (a TOTP code), finds the case in their queue and opens the review."""
    tab = staff_page(browser, server, doctor)
    tab.get_by_role("link", name=re.compile(r"SO-\d{4}-\d{5}")).click()
    tab.get_by_role("link", name="Open the review").click()
    expect(tab.get_by_role("heading", name=re.compile("Review of case"))).to_be_visible()
    return tab


def pay(page: Page, server: LiveServer, email: str, uid: str, status: str) -> None:
    sign_in(page, server, email)
    page.goto(f"{server.url}/cases/{uid}")
    page.get_by_role("button", name="Pay online (test)").click()
    page.get_by_role("button", name=re.compile(r"^Pay PKR .* succeeds")).click()
    expect(page.locator("#case-status")).to_contain_text(status)


def ask_patient(tab: Page, question: str) -> None:
    settled(tab)  # the draft so far is saved before the page moves on
    tab.get_by_label("Your question").fill(question)
    tab.get_by_role("button", name="Send the question and pause the clock").click()
    expect(tab.get_by_text("Your question is sent")).to_be_visible()
    expect(tab.locator("#questions")).to_contain_text("Awaiting the patient’s answer")


def invite_colleague(tab: Page, colleague: str, question: str) -> None:
    tab.get_by_text("Ask a colleague", exact=True).click()
    tab.get_by_role("combobox", name="Colleague").select_option(label=colleague)
    tab.get_by_label("What would you like their opinion on?").fill(question)
    tab.get_by_role("button", name="Ask for their opinion").click()
    expect(tab.get_by_text("Your colleague is asked; they can read the case now.")).to_be_visible()


def patient_answers(
    page: Page, server: LiveServer, uid: str, question: str, item: str, file: Path, answer: str
) -> None:
    """On their phone: the question is on the case page; they add the file it asks for, then
    answer in words, and the case goes back to the specialist."""
    page.goto(f"{server.url}/cases/{uid}")
    status = page.locator("#case-status")
    expect(status).to_contain_text("We need something from you")
    expect(page.locator("#needs")).to_contain_text(question)
    page.get_by_label("What are these files?").select_option(item)
    page.get_by_label("Choose files").set_input_files(str(file))
    page.get_by_role("button", name="Upload files").click()
    expect(page.get_by_role("link", name=file.name, exact=True)).to_be_visible()
    screenshot(page, "review-patient-asked-phone")
    page.get_by_label("Your answer").fill(answer)
    page.get_by_role("button", name="Send my answer").click()
    expect(page.get_by_text("Thank you. We told the team")).to_be_visible()
    expect(status).to_contain_text("In review")
    expect(page.locator("#needs")).to_contain_text(answer)


@dataclass
class Consult:
    tab: Page
    url: str


def colleague_concurs(
    browser: Browser, server: LiveServer, colleague: Person, asked: str, seen: str, comment: str
) -> Consult:
    """The colleague follows the emailed link, reads the case and a record, and concurs."""
    mail = [m for m in run_async(read_mail(server.settings)) if m["To"] == colleague.email]
    assert mail, "the colleague was not emailed"
    assert asked not in mail[-1].get_content()  # no medical text by email
    url = server.url + link_in(mail[-1], "/doctor/consults/")
    tab = staff_page(browser, server, colleague)
    tab.goto(url)
    expect(tab.locator("#asked")).to_contain_text(asked)
    expect(tab.get_by_text(seen).first).to_be_visible()
    with tab.expect_download(timeout=10_000) as opened:
        tab.get_by_role("link", name="report.pdf", exact=True).click()
    assert Path(opened.value.path()).read_bytes() == REPORT
    screenshot(tab, "review-colleague-consult")
    tab.get_by_label("Concurs", exact=True).check()
    tab.get_by_label("Your comment").fill(comment)
    tab.get_by_role("button", name="Send your answer").click()
    expect(tab.get_by_text("Your answer is sent to the reviewing doctor.")).to_be_visible()
    return Consult(tab, url)


def back_from_patient_and_colleague(tab: Page, answer: str, file: Path, comment: str) -> None:
    """The doctor reloads the workspace: the answer, the new file, the colleague's opinion."""
    tab.reload()
    questions = tab.locator("#questions")
    expect(questions).to_contain_text(answer)
    expect(questions).not_to_contain_text("Awaiting the patient’s answer")
    expect(tab.locator("#records")).to_contain_text(file.name)
    opinion = tab.locator("#colleagues")
    expect(opinion).to_contain_text("Concurs")
    expect(opinion).to_contain_text(comment)


def conclude(tab: Page, answers: dict[str, str], agreement: str, grade: str, summary: str) -> None:
    """Tick every material, answer each question, agree or not, and say it for the patient."""
    for box in tab.locator("#materials input[type=checkbox]").all():
        box.check()
    for question, answer in answers.items():
        tab.get_by_role("textbox", name=question, exact=True).fill(answer)
    tab.get_by_role("group", name="Does this opinion agree with the first one?").get_by_label(
        agreement
    ).check()
    tab.get_by_role("group", name="Concordance grade").get_by_label(grade).check()
    tab.get_by_role("group", name="Would this opinion change management?").get_by_label(
        "No", exact=True
    ).check()
    tab.get_by_label("What this means for you").fill(summary)


def shoot_workspace(tab: Page, name: str) -> None:
    screenshot(tab, f"review-{name}-workspace")
    tab.set_viewport_size({"width": 390, "height": 844})
    expect(tab.get_by_role("heading", name=re.compile("Review of case"))).to_be_visible()
    screenshot(tab, f"review-{name}-workspace-phone")
    tab.set_viewport_size({"width": 1280, "height": 900})


def preview(tab: Page) -> None:
    settled(tab)
    tab.get_by_role("button", name="Preview and sign").click()


def signature(tab: Page, doctor: Person, code: str) -> None:
    tab.get_by_label("Your password").fill(doctor.password)
    tab.get_by_label("Code from your authenticator app").fill(code)
    tab.get_by_label(re.compile("This is my opinion")).check()
    tab.get_by_role("button", name="Sign the review").click()


def sign(tab: Page, doctor: Person, name: str, seen: tuple[str, ...], consult: Consult) -> None:
    """On the preview: a wrong code is refused and nothing is signed; the right one signs, and
    the colleague's access ends with it."""
    expect(tab.get_by_role("heading", name=re.compile("Check and sign"))).to_be_visible()
    for text in seen:
        expect(tab.get_by_text(text).first).to_be_visible()
    screenshot(tab, f"review-{name}-sign")
    signature(tab, doctor, wrong_code(doctor))
    expect(tab.get_by_role("alert")).to_contain_text(
        "The password or the code from your authenticator app is not right."
    )
    expect(tab.get_by_role("heading", name=re.compile("Check and sign"))).to_be_visible()
    signature(tab, doctor, fresh_code(doctor))
    expect(tab.get_by_text("The review is signed.")).to_be_visible()
    signed = tab.locator("#review")
    expect(signed.get_by_role("heading", name="Signed review")).to_be_visible()
    expect(signed).to_contain_text(f"{doctor.user.full_name}, ")
    expect(signed).to_contain_text(PMDC)
    expect(tab.locator("#review-form")).to_have_count(0)
    expect(tab.locator("#colleagues")).to_contain_text("access ended")
    screenshot(tab, f"review-{name}-signed")
    assert consult.tab.goto(consult.url).status == 404  # the colleague reads it no more


# Radiology -----------------------------------------------------------------------------------

STUDY = "1.2.826.0.1.3680043.8.498.77"
MAMMOGRAM = {
    f"IM{n}.dcm": make_instance(
        number,
        study=STUDY,
        series=f"{STUDY}.{series}",
        series_number=series,
        modality="MG",
        body_part="BREAST",
        study_date="20261102",
        StudyDescription="MAMMOGRAM BILATERAL",
        SeriesDescription=view,
    )
    for n, (series, number, view) in enumerate(
        [(1, 1, "L CC"), (1, 2, "R CC"), (2, 1, "L MLO")], start=1
    )
}
IN_THE_ZIP = {"S001-MG/00001.dcm": "IM1.dcm", "S001-MG/00002.dcm": "IM2.dcm"}
IN_THE_ZIP["S002-MG/00001.dcm"] = "IM3.dcm"
RADIOLOGY_INTAKE = {
    "modality": ["mammogram"],
    "body_part": ["breast"],
    "study_date": ["2026-11-02"],
    "facility": ["City Breast Centre, Lahore"],
    "contrast": ["no"],
    "original_impression": ["Irregular mass in the left breast. BI-RADS 4A."],
    "clinical_question": ["A lump in the left breast for two months"],
    "has_prior_studies": ["no"],
}
RADIOLOGY_QUESTIONS = ("Is the lump cancer?", "Do I need a biopsy?")


def test_a_radiologist_reviews_a_mammogram_and_signs(
    server: LiveServer, browser: Browser, page: Page, tmp_path: Path
) -> None:
    doctor = run_async(
        _doctor(
            "rad.review@example.com",
            "Dr Zainab Rizvi",
            "radiology",
            "Consultant radiologist",
            "44120-P",
            "breast",
        )
    )
    colleague = run_async(
        _doctor(
            "rad.colleague@example.com",
            "Dr Bilal Chaudhry",
            "radiology",
            "Breast radiologist",
            "51007-P",
        )
    )
    email = register_patient("rad.patient@example.com", "Saima Akhtar")
    records = {name: (data, "images") for name, data in MAMMOGRAM.items()}
    records["report.pdf"] = (REPORT, "report")
    uid = run_async(
        _submitted_with_records(
            email, "radiology", RADIOLOGY_INTAKE, RADIOLOGY_QUESTIONS, doctor, records
        )
    )
    pay(page, server, email, uid, "Received for review")
    run_async(_accept(uid, doctor))

    # The radiologist opens the workspace: the case and its records beside the form.
    tab = open_workspace(browser, server, doctor)
    for text in (*RADIOLOGY_QUESTIONS, "A lump in the left breast for two months"):
        expect(tab.get_by_text(text).first).to_be_visible()
    tab.get_by_role("button", name="Add a lesion").click()
    lesion = tab.get_by_role("group", name="Lesion 1")
    lesion.get_by_label("Location").fill("Left breast, 2 o'clock, 4 cm from the nipple")
    lesion.get_by_label("Size (longest axis)").fill("11")
    lesion.get_by_label("Characterisation").fill("Irregular, indistinct margins")
    tab.get_by_role("group", name="Technique / study quality").get_by_label(
        "Diagnostic", exact=True
    ).check()
    tab.get_by_role("textbox", name="Comparison (optional)").fill("None available")
    tab.get_by_role("textbox", name="Findings", exact=True).fill(
        "Scattered fibroglandular density. An 11 mm irregular mass in the left upper outer "
        "quadrant. No suspicious calcifications. The right breast is normal."
    )
    # Breast imaging: the BI-RADS category appears (show-if) and is required.
    tab.get_by_role("group", name="Breast imaging?").get_by_label("Yes").check()
    tab.get_by_role("group", name="BI-RADS assessment category").get_by_label(
        re.compile("^4A – Low suspicion")
    ).check()
    tab.get_by_label("Impression").fill("Suspicious left breast mass, BI-RADS 4A.")
    tab.get_by_label("Recommendation").fill("Follow-up mammogram in six months.")

    # The whole study in one click: a ZIP of its files, named by series and instance.
    study = tab.get_by_role("link", name=re.compile("Download the whole study"))
    expect(study).to_contain_text("ZIP, 3 files")
    with tab.expect_download() as downloaded:
        study.click()
    assert downloaded.value.suggested_filename.endswith("-study-1.zip")
    with zipfile.ZipFile(downloaded.value.path()) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == list(IN_THE_ZIP)
        for name, uploaded in IN_THE_ZIP.items():
            assert archive.read(name) == MAMMOGRAM[uploaded]

    question = "Do you have the report of an earlier mammogram? Please add it."
    ask_patient(tab, question)
    invite_colleague(tab, "Dr Bilal Chaudhry", "Would you biopsy this 4A mass?")

    earlier = tmp_path / "mammogram 2024 report.pdf"
    earlier.write_bytes(b"%PDF-1.4\nmammogram 2024: no mass\n%%EOF\n")
    answer = "Yes, from 2024; it found no lump then."
    patient_answers(page, server, uid, question, "prior_studies", earlier, answer)
    comment = "Yes: new since 2024 and irregular. Core biopsy."
    consult = colleague_concurs(
        browser,
        server,
        colleague,
        "Would you biopsy this 4A mass?",
        "Irregular mass in the left breast",
        comment,
    )

    back_from_patient_and_colleague(tab, answer, earlier, comment)
    expect(tab.get_by_label("Impression")).to_have_value("Suspicious left breast mass, BI-RADS 4A.")
    conclude(
        tab,
        {
            "Is the lump cancer?": "We cannot tell from pictures alone; it needs a small sample.",
            "Do I need a biopsy?": "Yes. A needle biopsy of the lump, guided by ultrasound.",
        },
        "Agrees with the first opinion",
        "Agree",
        "We agree with your first report. The lump is new and needs a needle biopsy.",
    )
    # The plugin's rule across fields: BI-RADS 4A needs a tissue-sampling recommendation.
    preview(tab)
    expect(
        tab.get_by_text("BI-RADS 4A requires a tissue-sampling recommendation").first
    ).to_be_visible()
    tab.get_by_label("Recommendation").fill(
        "Ultrasound-guided core needle biopsy of the left mass."
    )
    shoot_workspace(tab, "radiology")
    preview(tab)
    sign(
        tab,
        doctor,
        "radiology",
        ("Ultrasound-guided core needle biopsy", "needs a needle biopsy", "4A – Low suspicion"),
        consult,
    )
    for other in (tab, consult.tab):
        other.context.close()


# Pathology -----------------------------------------------------------------------------------

PATHOLOGY_QUESTIONS = ("Is the grade right?", "Do I need more tests?")


def test_a_pathologist_reviews_a_biopsy_and_signs(
    server: LiveServer, browser: Browser, page: Page, tmp_path: Path
) -> None:
    doctor = run_async(
        _doctor(
            "path.review@example.com",
            "Dr Amina Sheikh",
            "pathology",
            "Consultant histopathologist",
            "38211-P",
        )
    )
    colleague = run_async(
        _doctor(
            "path.colleague@example.com",
            "Dr Tariq Hassan",
            "pathology",
            "Breast pathologist",
            "40455-P",
        )
    )
    coordinator = run_async(make_person("coordinator", "path.coord@example.com"))
    email = register_patient("path.patient@example.com", "Rukhsana Bibi")
    uid = run_async(
        _submitted_with_records(
            email,
            "pathology",
            PATHOLOGY_INTAKE,
            PATHOLOGY_QUESTIONS,
            doctor,
            {"report.pdf": (REPORT, "report")},
        )
    )
    pay(page, server, email, uid, "Submitted")  # the slides come by post
    run_async(_slides_arrive(uid, coordinator))
    run_async(_accept(uid, doctor))

    tab = open_workspace(browser, server, doctor)
    for text in (*PATHOLOGY_QUESTIONS, "Invasive ductal carcinoma, Nottingham grade 2"):
        expect(tab.get_by_text(text).first).to_be_visible()
    expect(tab.locator("#materials")).to_contain_text("The original glass slides")
    tab.get_by_role("group", name="Basis of this opinion").get_by_label(
        "Original glass slides"
    ).check()
    # A limited specimen: the reason is asked for (show-if) and required.
    tab.get_by_role("group", name="Specimen adequacy").get_by_label(
        "Limited – diagnosis qualified"
    ).check()
    tab.get_by_label("Reason for limited or inadequate specimen").fill(
        "Crush artefact in two of the three cores"
    )
    tab.get_by_role("textbox", name="Diagnosis", exact=True).fill(
        "Invasive carcinoma of no special type (ductal), Nottingham grade 3 (3+3+2)."
    )
    tab.get_by_label("Tumour grade / stage").fill("Nottingham grade 3")
    tab.get_by_label("Additional tests recommended").fill("HER2 FISH on block A2.")
    tab.get_by_label("Differences from the original report").fill(
        "Grade 3 rather than 2: the mitotic count is higher. Treatment is the same."
    )

    question = "Did the laboratory add a later page about HER2? Please add it."
    ask_patient(tab, question)
    invite_colleague(tab, "Dr Tariq Hassan", "Grade 3 on these cores?")

    addendum = tmp_path / "HER2 addendum.pdf"
    addendum.write_bytes(b"%PDF-1.4\nHER2 2+ equivocal\n%%EOF\n")
    answer = "Yes, a page saying HER2 2+; I added it."
    patient_answers(page, server, uid, question, "related_reports", addendum, answer)
    comment = "Agree: grade 3, the mitoses are brisk."
    consult = colleague_concurs(
        browser,
        server,
        colleague,
        "Grade 3 on these cores?",
        "Central Pathology Laboratory",
        comment,
    )

    back_from_patient_and_colleague(tab, answer, addendum, comment)
    conclude(
        tab,
        {
            "Is the grade right?": "It is a little higher: grade 3, not grade 2.",
            "Do I need more tests?": "Yes, one more test (FISH) on your sample to settle HER2.",
        },
        "Differs in details that do not change care",
        "Minor discordance",
        "The cancer is confirmed. We grade it 3, not 2; your treatment does not change.",
    )
    shoot_workspace(tab, "pathology")
    preview(tab)
    sign(
        tab,
        doctor,
        "pathology",
        ("Nottingham grade 3 (3+3+2)", "your treatment does not change", "Crush artefact"),
        consult,
    )
    for other in (tab, consult.tab):
        other.context.close()

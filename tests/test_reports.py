"""The signed report (issue 16; core/reports/): signing makes a version whose PDF is rendered and
PAdES-signed in a worker process, sealed and stored with its SHA-256; the case leaves the clock
at signing; the patient is told (no medical text) unless the report is held for a call; a
failed render loses nothing; only the patient, staff and the signing doctor read it, and every
opening is audited and shown to the patient."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import aclosing

import pytest

from core import context
from core.accounts.tables import User
from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases import states
from core.reports import service as reports
from core.reports import signing, worker
from core.reports.tables import Report, ReportVersion
from core.reviews.tables import SignedReview
from tests.conftest import open_client
from tests.payment_support import with_checkup
from tests.support import Person, make_person, post_form, read_mail, sign_in
from tests.test_review import _sign, accepted, complete_for

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def app(app):
    return with_checkup(app)


async def _signed_case(running_app) -> tuple[Person, object, Person]:
    doctor, case = await accepted(running_app)
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        await _sign(browser, doctor, f"/doctor/cases/{case.uid}/review")
    owner = await User.objects().where(User.id == case.patient).first()
    return doctor, await cases.get_case(str(case.uid)), Person(owner)


async def _issued(case) -> ReportVersion:
    return await ReportVersion.objects().where(ReportVersion.case == case.id).first()


@SQLITE
async def test_signing_issues_a_signed_sealed_pdf_and_tells_the_patient(running_app, settings):
    _doctor, case, patient = await _signed_case(running_app)
    assert case.status == states.REPORT_READY  # the clock stopped at signing
    row = await _issued(case)
    assert (row.status, row.version, row.kind) == ("issued", 1, "report")
    assert row.released_at is not None
    [mail] = [m for m in await read_mail(settings) if "report" in m["Subject"]]
    body = mail.get_content()
    assert mail["To"] == patient.user.email
    assert case.reference in mail["Subject"] and "is ready" in mail["Subject"]
    assert "operation" not in body.lower()  # no medical text: the summary stays on the site

    browser = open_client(running_app)
    await sign_in(browser, patient)
    async with aclosing(browser):
        home = (await browser.get(f"/cases/{case.uid}")).text
        assert "Read your report" in home and f"/cases/{case.uid}/report" in home
        assert "is due by" not in home  # the clock stopped: no due date to wait for
        page = await browser.get(f"/cases/{case.uid}/report")
        assert page.status_code == 200
        assert "You do not need an operation now." in page.text  # What this means for you
        assert "agrees with the first opinion" in page.text
        assert "12345-P" in page.text and "Pakistan Medical and Dental Council" in page.text
        pdf = await browser.get(f"/cases/{case.uid}/report/versions/1/pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert hashlib.sha256(pdf.content).hexdigest() == row.sha256
        opened = (await browser.get(f"/cases/{case.uid}/access")).text
    material = signing.load_material(settings)
    check = await asyncio.to_thread(signing.validate_pdf, pdf.content, material.cert_pem)
    assert check.intact and check.valid and check.trusted
    actions = await AuditEvent.select(AuditEvent.action).where(AuditEvent.case_id == str(case.uid))
    assert {"report.issue", "report.view", "report.download"} <= {a["action"] for a in actions}
    assert "Downloaded your report" in opened and "Viewed your report" in opened


@SQLITE
async def test_the_pdf_carries_what_every_report_must(running_app, settings):
    import io

    from pypdf import PdfReader

    _doctor, case, patient = await _signed_case(running_app)
    data = await reports.pdf_of(case, await reports.readable_version(case, patient.user, 1))
    pages = PdfReader(io.BytesIO(data)).pages
    text = "\n".join(page.extract_text() for page in pages)
    subject = await cases.subject_of(case)
    for number, page in enumerate(pages, start=1):
        words = page.extract_text()
        assert f"Page {number} of {len(pages)}" in words
        assert subject.name in words  # name (and date of birth, when given) on every page
    report = await Report.objects().where(Report.case == case.id).first()
    for needed in (
        case.reference,
        report.number,
        "What this means for you",
        "Your questions, answered",
        "Do I need an operation?",
        "What was reviewed",
        "Limitations and tests still pending",
        "If this differs from what your doctor told you",
        "12345-P",
        settings.hospital_name,
    ):
        assert needed in text, needed


@SQLITE
async def test_a_failed_render_loses_nothing_and_the_job_issues_it_later(
    running_app, settings, monkeypatch
):
    async def broken(*args, **kwargs):
        raise OSError("the renderer died")

    monkeypatch.setattr(worker, "signed_pdf", broken)
    _doctor, case, patient = await _signed_case(running_app)  # signing still succeeds
    row = await _issued(case)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "OSError")
    assert case.status == states.REPORT_READY
    assert await SignedReview.exists().where(SignedReview.case == case.id)
    assert "preparing your report" in await _patient_page(running_app, patient, case)
    browser = open_client(running_app)
    await sign_in(browser, patient)
    async with aclosing(browser):
        assert (await browser.get(f"/cases/{case.uid}/report")).status_code == 404

    # Still failing: the job fails too, so /admin/jobs shows it (and it tries again sooner).
    with pytest.raises(reports.ReportsNotIssued):
        await reports.issue_pending()
    assert (await _issued(case)).attempts == 2
    monkeypatch.undo()
    assert await reports.issue_pending() == 1
    assert (await _issued(case)).status == "issued"
    assert [m for m in await read_mail(settings) if "report" in m["Subject"]]
    assert "Read your report" in await _patient_page(running_app, patient, case)


async def _patient_page(running_app, patient: Person, case) -> str:
    browser = open_client(running_app)
    await sign_in(browser, patient)
    async with aclosing(browser):
        return (await browser.get(f"/cases/{case.uid}")).text


@SQLITE
async def test_a_report_held_for_a_call_reaches_the_patient_after_the_call(running_app, settings):
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        assert (await post_form(browser, f"{url}/hold", {"hold": "yes"})).status_code == 303
        await _sign(browser, doctor, url)
        owner = Person(await User.objects().where(User.id == case.patient).first())
        row = await _issued(case)
        assert row.status == "issued" and row.released_at is None
        assert not [m for m in await read_mail(settings) if "report" in m["Subject"]]
        page = await _patient_page(running_app, owner, case)
        assert "would like to speak with you" in page and "Read your report" not in page
        assert await reports.issue_pending() == 0  # the job does not release it either
        assert (await _issued(case)).released_at is None
        held_page = (await browser.get(url)).text
        assert "Hold the report for a conversation (held)" in held_page  # it can be lifted
        call = {
            "audience": "patient",
            "told": "The patient",
            "told_at": "2026-01-05T10:30",
            "read_back": "yes",
            "told_how": "phone",
        }
        assert (await post_form(browser, f"{url}/communications", call)).status_code == 303
        released_page = (await browser.get(url)).text
        assert "Hold the report for a conversation" not in released_page  # out: nothing to hold
    assert (await _issued(case)).released_at is not None
    assert [m for m in await read_mail(settings) if "report" in m["Subject"]]
    assert "Read your report" in await _patient_page(running_app, owner, case)


@SQLITE
async def test_only_the_patient_staff_and_the_signing_doctor_read_the_report(running_app):
    doctor, case, patient = await _signed_case(running_app)
    other_patient = await make_person("patient", "other-patient@example.com")
    other_doctor = await make_person("doctor", "other-doctor@example.com")
    coordinator = await make_person("coordinator", "coordinator-r@example.com")
    # The signing doctor (signed in once already this time step: checked by the service).
    assert await reports.may_read(doctor.user, case)
    assert (await reports.readable_version(case, doctor.user, 1)).version == 1
    for person, expected in (
        (patient, 200),
        (coordinator, 200),
        (other_patient, 404),
        (other_doctor, 404),
    ):
        browser = open_client(running_app)
        await sign_in(browser, person)
        async with aclosing(browser):
            page = await browser.get(f"/cases/{case.uid}/report")
            pdf = await browser.get(f"/cases/{case.uid}/report/versions/1/pdf")
            missing = await browser.get(f"/cases/{case.uid}/report/versions/2")
        assert (page.status_code, pdf.status_code) == (expected, expected), person.user.email
        assert missing.status_code == 404
        if expected == 404:
            assert "operation" not in page.text.lower()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_one_row_per_report_and_version(running_app):
    _doctor, case, _patient = await _signed_case(running_app)
    row = await _issued(case)
    twin = ReportVersion(
        report=row.report, case=row.case, version=1, kind="amended", review=row.review
    )
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await ReportVersion.insert(twin)
    assert await ReportVersion.count().where(ReportVersion.case == case.id) == 1
    assert context.current() is not None


async def _forget_codes(person: Person) -> None:
    """Let the same 30-s authenticator step sign again: one code per step is tested in
    test_accounts.py; here a doctor signs three times within a minute."""
    await User.update({User.totp_last_step: None}).where(User.id == person.user.id)
    person._steps.clear()


@SQLITE
async def test_an_addendum_then_an_amendment_each_make_a_signed_version(running_app, settings):
    from core.reports import verification

    doctor, case, patient = await _signed_case(running_app)
    first = await _issued(case)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await _forget_codes(doctor)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        empty = await post_form(browser, f"{url}/addendum", {})
        assert empty.status_code == 400 and "Write the addendum." in empty.text
        await _forget_codes(doctor)
        added = await post_form(
            browser,
            f"{url}/addendum",
            {
                "addendum_reason": "The ultrasound of 9 December arrived.",
                "addendum_text": "The ultrasound shows no new stones. The advice stands.",
                "password": doctor.password,
                "code": doctor.next_code(),
                "confirm": "yes",
            },
        )
        assert added.status_code == 303, added.text[:2000]
        after = await browser.get(added.headers["location"])
        assert after.status_code == 200 and "The addendum is signed." in after.text
        queue = (await browser.get("/dashboard")).text  # the case left the doctor's queue
        assert "Reports you signed recently" in queue and case.reference in queue
        started = await post_form(browser, f"{url}/amend", {})
        assert started.status_code == 303
        form = (await browser.get(url)).text
        assert "You are correcting the signed report" in form
        assert "You do not need an operation now." in form  # the signed text, to correct
        values = complete_for(form)
        values |= {
            "patient_summary": "We agree with your doctor. An operation is not needed this year.",
            "amend_reason": "The summary said 'now'; the advice covers the next twelve months.",
            "amend_notified": "The patient, by phone, 10 Dec 2026.",
            "version": "1",
            "action": "check",
        }
        checked = await post_form(browser, url, values)
        assert checked.headers["location"] == f"{url}/sign", checked.text[:2000]
        preview = (await browser.get(f"{url}/sign")).text
        assert "Sign the amended report" in preview
        await _forget_codes(doctor)
        signed = await post_form(
            browser,
            f"{url}/sign",
            {
                "version": "2",
                "password": doctor.password,
                "confirm": "yes",
                "code": doctor.next_code(),
            },
        )
        assert signed.status_code == 303, signed.text[:2000]
    rows = list(
        await ReportVersion.objects()
        .where(ReportVersion.case == case.id)
        .order_by(ReportVersion.version)
    )
    assert [(r.version, r.kind, r.status) for r in rows] == [
        (1, "report", "issued"),
        (2, "addendum", "issued"),
        (3, "amended", "issued"),
    ]
    mails = [m for m in await read_mail(settings) if "report" in m["Subject"]]
    assert sum("new version" in m["Subject"] for m in mails) == 2

    reader = open_client(running_app)
    await sign_in(reader, patient)
    async with aclosing(reader):
        current = (await reader.get(f"/cases/{case.uid}/report")).text
        old = (await reader.get(f"/cases/{case.uid}/report/versions/1")).text
        middle = (await reader.get(f"/cases/{case.uid}/report/versions/2")).text
    assert "Amended report (version 3)" in current and "the next twelve months" in current
    assert "an addendum" in current and "an amended report" in current  # the versions list
    assert "An operation is not needed this year." in current
    assert "You do not need an operation now." not in current
    assert "The ultrasound shows no new stones." in current  # the addendum still follows
    assert "This is not the current version" in old and "You do not need an operation now." in old
    assert "The ultrasound shows no new stones." not in old
    assert "Addendum (version 2)" in middle and "You do not need an operation now." in middle

    report = await Report.objects().where(Report.case == case.id).first()
    was = await verification.verify(report.number, first.sha256)
    now = await verification.verify(report.number, rows[-1].sha256)
    assert was.authentic and not was.current and was.superseded_by == 2
    assert now.authentic and now.current and now.version == 3
    # Statistics count the current version: the amended review's agreement.
    latest = (
        await SignedReview.objects()
        .where(SignedReview.case == case.id)
        .order_by(SignedReview.sequence, ascending=False)
        .first()
    )
    assert latest.sequence == 3 and latest.agreement == "agrees"


@SQLITE
async def test_only_the_signing_doctor_adds_to_or_corrects_the_report(running_app):
    from core.reviews import service as reviews
    from core.reviews.service import ReviewClosed

    _doctor, case, _patient = await _signed_case(running_app)
    other = await make_person("doctor", "not-the-signer@example.com")
    with pytest.raises(ReviewClosed):
        await reviews.start_amendment(case, other.user, ip=None)
    with pytest.raises(ReviewClosed):
        await reviews.sign_addendum(
            case,
            other.user,
            reason="x",
            text="y",
            password=other.password,
            code="000000",
            confirmed=True,
            ip=None,
        )
    assert not await reviews.amending(case, other.user)
    assert await SignedReview.count().where(SignedReview.case == case.id) == 1


@SQLITE
async def test_two_producers_of_one_version_issue_it_once_and_keep_one_pdf(
    running_app, settings, monkeypatch
):
    async def broken(*args, **kwargs):
        raise OSError("not now")

    monkeypatch.setattr(worker, "signed_pdf", broken)
    _doctor, case, _patient = await _signed_case(running_app)
    monkeypatch.undo()
    row = await _issued(case)
    assert row.status == "pending"
    stored = settings.var_dir / "documents"
    before = {p for p in stored.rglob("*") if p.is_file()}
    # The signing request's producer and the job's, at once: both render, one issues.
    results = await asyncio.gather(reports.produce(row.uid), reports.produce(row.uid))
    assert sorted(results) == [False, True]
    issued = await _issued(case)
    after = {p for p in stored.rglob("*") if p.is_file()}
    assert issued.status == "issued" and len(after - before) == 1  # the loser's PDF is deleted
    data = await reports.pdf_of(case, await reports.readable_version(case, _patient.user, 1))
    assert hashlib.sha256(data).hexdigest() == issued.sha256


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_logged_conversation_printed_in_reports_cannot_be_changed(running_app):
    from core.reviews import urgent
    from core.reviews.tables import Communication

    doctor, case = await accepted(running_app)
    told = {
        "audience": "patient",
        "told": "The patient",
        "told_at": "2026-01-05T10:30",
        "told_how": "phone",
        "read_back": "yes",
    }
    await urgent.log(case, doctor.user, told, ip=None)
    with pytest.raises(Exception, match="cannot be changed"):
        await Communication.update({Communication.told: "Nobody"}).where(
            Communication.case == case.id
        )
    with pytest.raises(Exception, match="cannot be changed"):
        await Communication.delete().where(Communication.case == case.id)
    [row] = await Communication.select(Communication.told).where(Communication.case == case.id)
    assert row["told"] == "The patient"


@SQLITE
async def test_lifting_the_hold_sends_a_held_report(running_app, settings):
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        assert (await post_form(browser, f"{url}/hold", {"hold": "yes"})).status_code == 303
        await _sign(browser, doctor, url)
        assert (await _issued(case)).released_at is None
        # The doctor decides the report may go out without the call (no box ticked: no hold).
        assert (await post_form(browser, f"{url}/hold", {})).status_code == 303
    assert (await _issued(case)).released_at is not None
    assert [m for m in await read_mail(settings) if "is ready" in m["Subject"]]

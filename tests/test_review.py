"""The doctor's structured review (issue 15; core/reviews/): a draft that two tabs cannot
overwrite unseen, the checks before signing (fields, core's rules, the plugin's hook), signing
with password and a current authenticator code, and a signed review nobody can change — not
even the app's own database role (triggers, both engines)."""

from __future__ import annotations

from contextlib import aclosing

import pytest

from core.accounts.tables import DoctorProfile
from core.assignment import service as assignment
from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases import states
from core.documents.tables import Document
from core.reviews import urgent
from core.reviews.tables import ColleagueInvite, ReviewDraft, SignedReview
from tests.conftest import open_client
from tests.payment_support import with_checkup
from tests.support import Person, make_person, post_form, read_mail, sign_in
from tests.test_assignment import checkup_doctor, patient_view_of, received_case


@pytest.fixture
def app(app):
    return with_checkup(app)


# Tests of what the database enforces (conditional updates, unique indexes, triggers, ON
# CONFLICT) run on both engines; tests of pages and rules above them run on SQLite only, to
# keep the suite's time (marked with the indirect `database_url` below).


# A complete review of the checkup case (question 1: "Do I need an operation?").
COMPLETE = {
    "materials": [],  # filled per case: the letter
    "opinion": "Gallstones without complications; watchful waiting is reasonable.",
    "operate": "no",
    "answer_1": "Not now. An operation is advised only if the pain comes back.",
    "agreement": "agrees",
    "concordance": "same",
    "management_change": "no",
    "patient_summary": "We agree with your doctor. You do not need an operation now.",
}


async def accepted(running_app) -> tuple[Person, object]:
    doctor = await checkup_doctor(f"reviewer-{id(running_app)}@example.com")
    await DoctorProfile.update(
        {
            DoctorProfile.registration_number: "12345-P",
            DoctorProfile.registering_body: "Pakistan Medical and Dental Council",
        }
    ).where(DoctorProfile.doctor == doctor.user.id)
    case = await received_case(running_app)
    assert case.assigned_doctor == doctor.user.id
    await assignment.accept(case, doctor.user, no_conflict=True, ip=None)
    return doctor, await cases.get_case(str(case.uid))


def complete_for(page: str) -> dict:
    """The complete review, ticking the record the page offers."""
    import re

    values = dict(COMPLETE)
    values["materials"] = re.findall(r'name="materials" value="([^"]+)"', page)
    assert values["materials"], "no material to tick"
    return values


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_first_save_starts_the_review_and_a_reload_shows_the_draft(running_app):
    doctor, case = await accepted(running_app)
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        page = await browser.get(f"/doctor/cases/{case.uid}/review")
        assert page.status_code == 200
        for seen in ("Do I need an operation?", "What this means for you", "letter.pdf"):
            assert seen in page.text, seen
        saved = await post_form(
            browser,
            f"/doctor/cases/{case.uid}/review/autosave",
            {"version": "0", "opinion": "Half a thought"},
            headers={"hx-request": "true"},
        )
        assert saved.status_code == 200 and 'value="1"' in saved.text
        assert (await cases.get_case(str(case.uid))).status == states.IN_REVIEW
        again = await browser.get(f"/doctor/cases/{case.uid}/review")
        assert "Half a thought" in again.text and 'id="review-version" value="1"' in again.text


async def test_two_tabs_never_lose_text(running_app):
    """Tab B, loaded before tab A saved, is refused (409) with A's text shown; B's text stays
    in B's form, and only B's explicit "Keep this page's text" replaces A's."""
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    hx = {"hx-request": "true"}
    async with aclosing(browser):
        first = await post_form(
            browser, f"{url}/autosave", {"version": "0", "opinion": "Text of tab A"}, headers=hx
        )
        assert first.status_code == 200
        stale = await post_form(
            browser, f"{url}/autosave", {"version": "0", "opinion": "Text of tab B"}, headers=hx
        )
        assert stale.status_code == 409
        assert "Text of tab A" in stale.text and "another tab" in stale.text
        [draft] = await ReviewDraft.select().where(ReviewDraft.case == case.id)
        assert "Text of tab A" in draft["entries"] and draft["version"] == 1
        # Without htmx the same refusal is the whole page, with B's entries kept in the form.
        page = await post_form(browser, url, {"version": "0", "opinion": "Text of tab B"})
        assert page.status_code == 409
        assert "Text of tab A" in page.text and ">Text of tab B</textarea>" in page.text
        kept = await post_form(
            browser, url, {"version": "0", "overwrite": "1", "opinion": "Text of tab B"}
        )
        assert kept.status_code == 303
        [draft] = await ReviewDraft.select().where(ReviewDraft.case == case.id)
        assert "Text of tab B" in draft["entries"] and draft["version"] == 2
        # Tab A, still at version 1, is now the stale one.
        late = await post_form(
            browser, f"{url}/autosave", {"version": "1", "opinion": "Tab A again"}, headers=hx
        )
        assert late.status_code == 409 and "Text of tab B" in late.text


async def test_signing_needs_every_answer_the_password_and_a_current_code(running_app):
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        page = (await browser.get(url)).text
        # Nothing answered: the check shows the form again with what is missing.
        incomplete = await post_form(browser, url, {"version": "0", "action": "check"})
        assert incomplete.status_code == 303
        shown = await browser.get(incomplete.headers["location"])
        assert shown.status_code == 400
        assert "Do I need an operation?" in shown.text and "error-text" in shown.text
        # The plugin's rule across fields (consilium_validate_review) and core's agreement rule.
        values = complete_for(page)
        crossed = {**values, "concordance": "other", "version": "1", "action": "check"}
        await post_form(browser, url, crossed)
        shown = await browser.get(f"{url}/sign")
        assert shown.status_code == 400
        assert "Say what you conclude instead." in shown.text
        assert "make the two answers say the same" in shown.text
        # Complete: the preview, then the signature.
        done = await post_form(browser, url, {**values, "version": "2", "action": "check"})
        assert done.headers["location"] == f"{url}/sign"
        preview = await browser.get(f"{url}/sign")
        assert preview.status_code == 200
        assert "You do not need an operation now." in preview.text
        assert "Same conclusion" in preview.text  # the grade, in words
        sign = {"version": "3", "password": doctor.password, "confirm": "yes"}
        wrong_code = await post_form(browser, f"{url}/sign", {**sign, "code": "000000"})
        assert wrong_code.status_code == 400 and "not right" in wrong_code.text
        wrong_password = await post_form(
            browser, f"{url}/sign", {**sign, "password": "nope", "code": "123456"}
        )
        assert wrong_password.status_code == 400
        unconfirmed = await post_form(
            browser, f"{url}/sign", {**sign, "confirm": "", "code": "123456"}
        )
        assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
        assert not await SignedReview.exists().where(SignedReview.case == case.id)
        failures = await AuditEvent.count().where(
            (AuditEvent.action == "review.sign") & (AuditEvent.outcome == "failure")
        )
        assert failures == 2
        signed = await post_form(browser, f"{url}/sign", {**sign, "code": doctor.next_code()})
        assert signed.status_code == 303, signed.text[:2000]
        [row] = await SignedReview.objects().where(SignedReview.case == case.id)
        assert row.registration_number == "12345-P" and row.signer_name == doctor.user.full_name
        assert row.agreement == "agrees" and row.concordance == "same"
        assert "Not now. An operation is advised" in row.content
        assert not await ReviewDraft.exists().where(ReviewDraft.case == case.id)
        after = await browser.get(url)
        assert "Signed review" in after.text and "review-form" not in after.text
        # Nothing changes a signed review through the app either.
        late = await post_form(browser, url, {"version": "0", "opinion": "Second thoughts"})
        assert late.status_code == 409 and "signed" in late.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_draft_changed_after_the_preview_is_not_signed(running_app):
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        values = complete_for((await browser.get(url)).text)
        await post_form(browser, url, {**values, "version": "0", "action": "check"})
        await post_form(browser, url, {**values, "version": "1", "opinion": "Changed instead"})
        stale = await post_form(
            browser,
            f"{url}/sign",
            {"version": "1", "password": doctor.password, "confirm": "yes", "code": "1"},
        )
        assert stale.status_code == 409 and "Changed instead" in stale.text
        assert not await SignedReview.exists().where(SignedReview.case == case.id)


async def test_a_signed_review_cannot_be_updated_or_deleted_in_the_database(running_app):
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        values = complete_for((await browser.get(url)).text)
        await post_form(browser, url, {**values, "version": "0", "action": "check"})
        signed = await post_form(
            browser,
            f"{url}/sign",
            {
                "version": "1",
                "password": doctor.password,
                "confirm": "yes",
                "code": doctor.next_code(),
            },
        )
        assert signed.status_code == 303
    with pytest.raises(Exception, match="cannot be changed"):
        await SignedReview.update({SignedReview.agreement: "differs"}).where(
            SignedReview.case == case.id
        )
    with pytest.raises(Exception, match="cannot be changed"):
        await SignedReview.delete().where(SignedReview.case == case.id)
    with pytest.raises(Exception, match="cannot be changed"):
        await SignedReview.raw("UPDATE review_signed SET content = '{}'")
    [row] = await SignedReview.select(SignedReview.agreement).where(SignedReview.case == case.id)
    assert row["agreement"] == "agrees"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_only_the_doctor_who_accepted_writes_the_review(running_app):
    _doctor, case = await accepted(running_app)
    other = await checkup_doctor("not-this-one@example.com")
    patient_b = await make_person("patient")
    url = f"/doctor/cases/{case.uid}/review"
    for person, status in ((other, 404), (patient_b, 403)):
        browser = open_client(running_app)
        await sign_in(browser, person)
        async with aclosing(browser):
            assert (await browser.get(url)).status_code == status
            saved = await post_form(browser, url, {"version": "0", "opinion": "Mine"})
            assert saved.status_code == status
    assert not await ReviewDraft.exists().where(ReviewDraft.case == case.id)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_offer_not_yet_accepted_has_no_review(running_app):
    doctor = await checkup_doctor("offered-only@example.com")
    case = await received_case(running_app)
    assert case.status == states.OFFERED and case.assigned_doctor == doctor.user.id
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        shown = await browser.get(url)
        assert shown.status_code == 303 and shown.headers["location"] == f"/doctor/cases/{case.uid}"
        saved = await post_form(browser, url, {"version": "0", "opinion": "Too early"})
        assert saved.status_code == 303
    assert not await ReviewDraft.exists().where(ReviewDraft.case == case.id)
    assert (await cases.get_case(str(case.uid))).status == states.OFFERED


# Urgent findings (core/reviews/urgent.py) -------------------------------------------------------


async def test_an_urgent_finding_alerts_the_coordinators_once_and_asks_the_patient_to_call(
    running_app, settings
):
    doctor, case = await accepted(running_app)
    coordinator = await make_person("coordinator", "urgent-coord@example.com")
    url = f"/doctor/cases/{case.uid}/review"
    finding = {"category": "critical", "finding_note": "Tension pneumothorax on the left"}
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        refused = await post_form(browser, f"{url}/urgent", {"category": "critical"})
        assert refused.status_code == 400 and "care team reads it" in refused.text
        marked = await post_form(browser, f"{url}/urgent", finding)
        assert marked.status_code == 303
        again = await post_form(browser, f"{url}/urgent", finding)  # a second click, a 2nd tab
        assert again.status_code == 303
    mail = await read_mail(settings)
    alerts = [m for m in mail if m["To"] == coordinator.email and "Urgent" in m["Subject"]]
    assert len(alerts) == 1
    assert "pneumothorax" not in alerts[0].get_content()  # no medical text by email
    assert f"/staff/cases/{case.uid}" in alerts[0].get_content()
    patient_page = await patient_view_of(running_app, case)
    assert "Please call us today" in patient_page and "pneumothorax" not in patient_page
    # The coordinators' "Needs you" lists it until one of them takes it in hand.
    staff = open_client(running_app)
    await sign_in(staff, coordinator)
    async with aclosing(staff):
        needs = (await staff.get("/attention")).text
        assert "Urgent finding: call now" in needs and case.reference in needs
        page = (await staff.get(f"/staff/cases/{case.uid}")).text
        assert "Tension pneumothorax on the left" in page
        taken = await post_form(staff, f"/staff/cases/{case.uid}/urgent/in-hand")
        assert taken.status_code == 303
        assert "Urgent finding: call now" not in (await staff.get("/attention")).text
        # The coordinator logs the call; then the patient's page no longer asks.
        bad = await post_form(staff, f"/staff/cases/{case.uid}/communications", {"told": "x"})
        assert bad.status_code == 400 and "Choose how they were told." in bad.text
        logged = await post_form(
            staff,
            f"/staff/cases/{case.uid}/communications",
            {
                "audience": "patient",
                "told": "The patient himself",
                "told_at": "2026-01-05T10:30",
                "told_how": "phone",
                "read_back": "yes",
            },
        )
        assert logged.status_code == 303
    patient_page = await patient_view_of(running_app, case)
    assert "Please call us today" not in patient_page
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        page = (await browser.get(url)).text
        assert "The patient himself" in page and "Telephone" in page
    events = await AuditEvent.count().where(AuditEvent.action == "review.urgent")
    assert events == 1


async def test_a_report_held_for_a_call_waits_until_the_patient_is_spoken_with(running_app):
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        assert (await post_form(browser, f"{url}/hold", {"hold": "yes"})).status_code == 303
        assert (await urgent.urgency_of(case)).held_for_call
        message = {
            "audience": "patient",
            "told": "The patient",
            "told_at": "2026-01-05T10:30",
            "read_back": "no",
        }
        await post_form(browser, f"{url}/communications", {**message, "told_how": "secure_message"})
        assert (await urgent.urgency_of(case)).held_for_call  # a message is not a conversation
        await post_form(browser, f"{url}/communications", {**message, "told_how": "video"})
        assert not (await urgent.urgency_of(case)).held_for_call


# A colleague's opinion (core/reviews/colleagues.py) ---------------------------------------------


async def _sign(browser, doctor: Person, url: str) -> None:
    values = complete_for((await browser.get(url)).text)
    checked = await post_form(browser, url, {**values, "version": "0", "action": "check"})
    assert checked.headers["location"] == f"{url}/sign"
    [version] = await ReviewDraft.select(ReviewDraft.version).output(as_list=True)
    signed = await post_form(
        browser,
        f"{url}/sign",
        {
            "version": str(version),
            "password": doctor.password,
            "confirm": "yes",
            "code": doctor.next_code(),
        },
    )
    assert signed.status_code == 303, signed.text[:3000]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_colleague_reads_the_case_while_invited_and_their_answer_is_signed_with_it(
    running_app, settings
):
    doctor, case = await accepted(running_app)
    colleague = await make_person("doctor", "colleague@example.com")
    stranger = await make_person("doctor", "stranger@example.com")
    [letter] = (
        await Document.select(Document.uid).where(Document.case == case.id).output(as_list=True)
    )
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        refused = await post_form(browser, f"{url}/colleagues", {"question": "Agree?"})
        assert refused.status_code == 400 and "Choose the colleague" in refused.text
        asked = await post_form(
            browser,
            f"{url}/colleagues",
            {"colleague": str(colleague.user.uid), "question": "Is watchful waiting safe here?"},
        )
        assert asked.status_code == 303
        [invite] = await ColleagueInvite.objects().where(ColleagueInvite.case == case.id)
        consult = f"/doctor/consults/{invite.uid}"
        mail = [m for m in await read_mail(settings) if m["To"] == colleague.email]
        assert consult in mail[-1].get_content()
        assert "watchful" not in mail[-1].get_content()  # no medical text by email

        other = open_client(running_app)
        await sign_in(other, colleague)
        async with aclosing(other):
            page = await other.get(consult)
            assert page.status_code == 200
            assert "Is watchful waiting safe here?" in page.text and "Gallstones" in page.text
            document = f"/cases/{case.uid}/documents/{letter}"
            assert (await other.get(document)).status_code == 200  # read-only access
            assert (await other.get(url)).status_code == 404  # never the draft
            empty = await post_form(other, consult, {"comment": "Yes"})
            assert empty.status_code == 400 and "whether you concur" in empty.text
            answered = await post_form(
                other, consult, {"comment": "Safe while the pain stays away.", "concurs": "yes"}
            )
            assert answered.status_code == 303
            shown = (await browser.get(url)).text
            assert "Safe while the pain stays away." in shown and "Concurs" in shown
            # Another doctor, while the invitation is open: not found.
            outsider = open_client(running_app)
            await sign_in(outsider, stranger)
            async with aclosing(outsider):
                assert (await outsider.get(consult)).status_code == 404
                assert (await outsider.get(document)).status_code == 404

            await _sign(browser, doctor, url)
            [row] = await SignedReview.objects().where(SignedReview.case == case.id)
            assert "Safe while the pain stays away." in row.content
            # Signing ends the colleague's access: the page and the records are gone for them.
            assert (await other.get(consult)).status_code == 404
            assert (await other.get(document)).status_code == 404

    reads = await AuditEvent.count().where(AuditEvent.action == "review.colleague_read")
    assert reads == 2  # the page, and again with the refused answer


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_withdrawing_an_invitation_ends_the_colleagues_access(running_app):
    doctor, case = await accepted(running_app)
    colleague = await make_person("doctor", "withdrawn@example.com")
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        await post_form(
            browser,
            f"{url}/colleagues",
            {"colleague": str(colleague.user.uid), "question": "A second look?"},
        )
        [invite] = await ColleagueInvite.objects().where(ColleagueInvite.case == case.id)
        other = open_client(running_app)
        await sign_in(other, colleague)
        async with aclosing(other):
            assert (await other.get(f"/doctor/consults/{invite.uid}")).status_code == 200
            ended = await post_form(browser, f"{url}/colleagues/{invite.uid}/withdraw")
            assert ended.status_code == 303
            assert (await other.get(f"/doctor/consults/{invite.uid}")).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_wrong_attempts_at_signing_are_slowed_down_like_sign_ins(running_app):
    """A session left open cannot be used to guess the password or the code: after five wrong
    attempts even the right ones wait (the sign-in's back-off, per account)."""
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        values = complete_for((await browser.get(url)).text)
        await post_form(browser, url, {**values, "version": "0", "action": "check"})
        sign = {"version": "1", "confirm": "yes", "code": "123456"}
        for _ in range(5):
            wrong = await post_form(browser, f"{url}/sign", {**sign, "password": "guess"})
            assert wrong.status_code == 400
        right = {**sign, "password": doctor.password, "code": doctor.next_code()}
        waited = await post_form(browser, f"{url}/sign", right)
        assert waited.status_code == 429 and "Too many wrong attempts" in waited.text
    assert not await SignedReview.exists().where(SignedReview.case == case.id)


async def test_a_button_pressed_while_the_same_pages_autosave_is_on_its_way_is_no_conflict(
    running_app,
):
    """ "Preview and sign" sends the version the page had; when the page's own autosave has
    just moved the draft on, that is not another tab: saved. Another page still conflicts."""
    doctor, case = await accepted(running_app)
    url = f"/doctor/cases/{case.uid}/review"
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    hx = {"hx-request": "true"}
    async with aclosing(browser):
        typed = {"version": "0", "page": "a" * 32, "opinion": "Typed"}
        assert (await post_form(browser, f"{url}/autosave", typed, headers=hx)).status_code == 200
        pressed = await post_form(browser, url, {**typed, "opinion": "Typed, then saved"})
        assert pressed.status_code == 303
        [draft] = await ReviewDraft.select().where(ReviewDraft.case == case.id)
        assert "Typed, then saved" in draft["entries"] and draft["version"] == 2
        other = {"version": "0", "page": "b" * 32, "opinion": "Another tab"}
        assert (await post_form(browser, url, other)).status_code == 409

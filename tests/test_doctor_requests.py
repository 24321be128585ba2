"""The reviewing doctor's questions to the patient (core/completeness, core/pages/
doctor_requests.py): asking starts the review if need be and makes the case wait
(awaiting_info, clock paused); the patient's answer, or a coordinator's close, puts it back in
review with the due date moved; the rounds read as one thread on every page that shows them;
only the doctor the case is with may ask, and only the patient may answer."""

from __future__ import annotations

from contextlib import aclosing
from datetime import date

import pytest

from core.assignment import service as assignment
from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases.tables import Case, CaseEvent
from core.completeness import service as completeness
from core.completeness.tables import RecordsRequest
from core.errors import InvalidInput, Refused
from tests.conftest import open_client
from tests.payment_support import CHECKUP, with_checkup
from tests.support import Person, make_person, post_form, read_mail, sign_in
from tests.test_assignment import checkup_doctor
from tests.test_completeness import Frozen, at, paid_case, patient_page

FIRST = "When did the pain start, and do you take blood thinners such as warfarin?"
SECOND = "Please add the ultrasound report from March if you have it."


@pytest.fixture
def app(app):
    return with_checkup(app)


async def accepted_case(app) -> tuple[Case, Person, Person]:
    """A received checkup case accepted by its doctor (assigned, review not started)."""
    doctor = await checkup_doctor("reviewer@example.com")
    case, patient = await paid_case(app)
    await assignment.accept(case, doctor.user, no_conflict=True, ip=None)
    case = await cases.get_case(str(case.uid))
    assert case.status == "assigned"
    return case, patient, doctor


async def as_person(app, person: Person, method: str, path: str, data: dict | None = None):
    client = open_client(app)
    await sign_in(client, person)
    async with aclosing(client):
        if method == "GET":
            return await client.get(path)
        return await post_form(client, path, data or {})


async def open_question(case: Case) -> RecordsRequest:
    return (
        await RecordsRequest.objects()
        .where((RecordsRequest.case == case.id) & (RecordsRequest.status == "open"))
        .first()
    )


async def test_the_doctor_asks_the_patient_answers_and_the_review_resumes(
    running_app, settings, monkeypatch
) -> None:
    time = Frozen(monkeypatch, at("2026-12-07"))  # a Monday
    case, patient, doctor = await accepted_case(running_app)
    assert case.due_on == date(2026, 12, 14)

    # Wednesday: the doctor asks from an accepted case; the review starts on the way.
    time.now = at("2026-12-09", "11:00")
    response = await as_person(
        running_app, doctor, "POST", f"/doctor/cases/{case.uid}/requests", {"message": FIRST}
    )
    assert response.status_code == 303
    assert response.headers["location"] == (
        f"/doctor/cases/{case.uid}/review?notice=question-asked#questions"
    )
    case = await cases.get_case(str(case.uid))
    assert (case.status, case.waiting_since) == ("awaiting_info", time.now)
    assert cases.due_state(case, date(2026, 12, 14)) == cases.PAUSED
    actions = [e.action for e in await CaseEvent.objects().where(CaseEvent.case == case.id)]
    assert "start_review" in actions and "request_info" in actions
    asked = await AuditEvent.objects().where(AuditEvent.action == "records_request.ask").first()
    assert asked.actor_uid == str(doctor.user.uid) and '"asked_by_role":"doctor"' in asked.details

    # The patient is told there is a question, never what it is.
    mail = [m for m in await read_mail(settings) if m["To"] == patient.email]
    [told] = [m for m in mail if "question" in m["Subject"]]
    body = told.get_content()
    assert case.reference in body and f"/cases/{case.uid}" in body
    assert "blood thinners" not in body + told["Subject"] and "pain" not in body

    # The patient reads it on their case page and must answer in words.
    page = await patient_page(running_app, patient, case)
    assert "Questions and answers" in page and "Send my answer" in page
    assert "blood thinners such as warfarin" in page
    ask = await open_question(case)
    answer_path = f"/cases/{case.uid}/requests/{ask.uid}/answer"
    response = await as_person(running_app, patient, "POST", answer_path, {"answer": "  "})
    assert response.status_code == 400 and "Write your answer" in response.text
    assert (await cases.get_case(str(case.uid))).status == "awaiting_info"

    # The next Monday: the answer ends the wait, the due date moves (Thu, Fri, Mon).
    time.now = at("2026-12-14", "09:00")
    first_answer = "Since March. No blood thinners."
    response = await as_person(running_app, patient, "POST", answer_path, {"answer": first_answer})
    assert response.status_code == 303
    case = await cases.get_case(str(case.uid))
    assert (case.status, case.waiting_since) == ("in_review", None)
    assert (case.due_first, case.due_on) == (date(2026, 12, 14), date(2026, 12, 17))
    assert await AuditEvent.exists().where(AuditEvent.action == "case.provide_info")

    # The doctor hears of the answer: the reference and their case link, not the answer.
    mail = [m for m in await read_mail(settings) if m["To"] == doctor.email]
    [answered] = [m for m in mail if "answered your question" in m["Subject"]]
    body = answered.get_content()
    assert case.reference in answered["Subject"] and f"/doctor/cases/{case.uid}" in body
    assert "March" not in body and "thinners" not in body

    # A second round, from in_review this time.
    await completeness.ask_question(case, doctor.user, {"message": SECOND}, CHECKUP, ip=None)
    case = await cases.get_case(str(case.uid))
    assert case.status == "awaiting_info" and case.waiting_since is not None
    ask = await open_question(case)
    await completeness.answer(case, patient.user, str(ask.uid), "Added it today.", ip=None)
    case = await cases.get_case(str(case.uid))
    assert (case.status, case.waiting_since) == ("in_review", None)

    # One thread, oldest first, for the doctor, the patient and staff.
    thread = await completeness.thread_of(case, CHECKUP)
    assert [(r.message, r.answer, r.answered) for r in thread.rounds] == [
        (FIRST, first_answer, True),
        (SECOND, "Added it today.", True),
    ]
    assert thread.rounds[0].answered_at == at("2026-12-14", "09:00")
    assert thread.rounds[0].asked_by == doctor.user.full_name and thread.can_ask
    response = await as_person(running_app, doctor, "GET", f"/doctor/cases/{case.uid}/requests")
    assert response.status_code == 200
    text = response.text
    assert text.index("blood thinners such as warfarin") < text.index("Since March")
    assert text.index("Since March") < text.index("ultrasound report") < text.index("Added it")
    page = await patient_page(running_app, patient, case)
    assert page.index("Since March") < page.index("Added it today") and "Send my answer" not in page
    coordinator = await make_person("coordinator")
    response = await as_person(running_app, coordinator, "GET", f"/staff/cases/{case.uid}")
    assert "Questions from the reviewing doctor" in response.text
    assert response.text.index("Since March") < response.text.index("Added it today")


async def test_a_coordinator_closing_the_doctors_question_resumes_the_review(
    running_app, settings
) -> None:
    case, _, doctor = await accepted_case(running_app)
    coordinator = await make_person("coordinator")
    await completeness.ask_question(case, doctor.user, {"message": FIRST}, CHECKUP, ip=None)
    # The coordinators' own request while the doctor's is open: the case waits for both.
    records = await completeness.ask(
        case, coordinator.user, {"message": "The last page"}, CHECKUP, ip=None
    )
    question = await open_question(case)
    await completeness.close(case, coordinator.user, str(records.uid), "received", ip=None)
    assert (await cases.get_case(str(case.uid))).status == "awaiting_info"
    await completeness.close(case, coordinator.user, str(question.uid), "withdrawn", ip=None)
    case = await cases.get_case(str(case.uid))
    assert (case.status, case.waiting_since) == ("in_review", None)
    resumed = await AuditEvent.objects().where(AuditEvent.action == "case.provide_info").first()
    assert resumed.actor_uid == str(coordinator.user.uid)
    [line] = (await completeness.thread_of(case, CHECKUP)).rounds
    assert line.ended_words == "Closed by the hospital: no longer needed." and not line.answered
    mail = [m for m in await read_mail(settings) if m["To"] == doctor.email]
    assert any("was closed" in m["Subject"] for m in mail)


async def test_a_material_the_doctor_asks_for_ends_the_wait_when_it_arrives(running_app) -> None:
    case, patient, doctor = await accepted_case(running_app)
    coordinator = await make_person("coordinator")
    values = {"message": "Please have the lab post the paraffin blocks.", "by_post": "blocks"}
    request = await completeness.ask_question(case, doctor.user, values, CHECKUP, ip=None)
    with pytest.raises(Refused, match="package"):  # its arrival answers it
        await completeness.answer(case, patient.user, str(request.uid), "Posted", ip=None)
    arrived = {"material": "blocks", "count": "2", "identifiers": "B1, B2"}
    await completeness.record_arrival(case, coordinator.user, arrived, CHECKUP, ip=None)
    assert (await cases.get_case(str(case.uid))).status == "in_review"


async def test_only_the_doctor_the_case_is_with_asks_and_only_its_patient_answers(
    running_app,
) -> None:
    case, _, doctor = await accepted_case(running_app)
    other_doctor = await checkup_doctor("other-reviewer@example.com")
    path = f"/doctor/cases/{case.uid}/requests"
    assert (await as_person(running_app, other_doctor, "GET", path)).status_code == 404
    response = await as_person(running_app, other_doctor, "POST", path, {"message": FIRST})
    assert response.status_code == 404
    with pytest.raises(cases.CaseNotFound):
        await completeness.ask_question(
            case, other_doctor.user, {"message": FIRST}, CHECKUP, ip=None
        )
    assert await AuditEvent.exists().where(AuditEvent.action == "access.denied")
    assert not await RecordsRequest.exists().where(RecordsRequest.case == case.id)

    # The form's mistakes come back on the doctor's own small page, with what was typed; the
    # provider link is not the doctor's to use (always the patient).
    too_long = "Why? " * 500
    response = await as_person(running_app, doctor, "POST", path, {"message": too_long})
    assert response.status_code == 400 and "Use at most 2000 characters" in response.text
    assert "Why? Why?" in response.text and 'for="f-message"' in response.text
    values = {"message": FIRST, "audience": "provider", "provider_email": "lab@example.com"}
    request = await completeness.ask_question(case, doctor.user, values, CHECKUP, ip=None)
    assert (request.audience, request.link, request.provider_email) == ("patient", None, "")

    # Patient B: the answer route does not exist for them.
    patient_b = await make_person("patient", "patient-b@example.com")
    answer_path = f"/cases/{case.uid}/requests/{request.uid}/answer"
    response = await as_person(running_app, patient_b, "POST", answer_path, {"answer": "Hi"})
    assert response.status_code == 404
    with pytest.raises(cases.CaseNotFound):
        await completeness.answer(case, patient_b.user, str(request.uid), "Hi", ip=None)
    assert (await cases.get_case(str(case.uid))).status == "awaiting_info"


async def test_a_case_only_offered_to_the_doctor_takes_no_question(running_app) -> None:
    doctor = await checkup_doctor("offered@example.com")
    case, _ = await paid_case(running_app)
    assert (case.status, case.assigned_doctor) == ("offered", doctor.user.id)
    response = await as_person(
        running_app, doctor, "POST", f"/doctor/cases/{case.uid}/requests", {"message": FIRST}
    )
    assert response.status_code == 409 and "once you have accepted the case" in response.text
    with pytest.raises(InvalidInput):
        await completeness.ask_question(case, doctor.user, {"message": " "}, CHECKUP, ip=None)
    thread = await completeness.thread_of(case, CHECKUP)
    assert thread.rounds == [] and not thread.can_ask

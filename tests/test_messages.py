"""Who hears of a case's way to a doctor (issue 14; core/assignment/messages.py): the doctor
offered it, the coordinators when a case needs a doctor or a doctor declines, lets an offer
lapse or hands it back, the patient when a specialist accepts and when the expected date
moves. Each once, with the reference and a link, never the diagnosis."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from core import clock
from core.assignment import service as assignment
from core.assignment.tables import Offer
from core.cases import service as cases
from core.completeness import service as completeness
from tests.payment_support import CHECKUP, with_checkup
from tests.support import make_person, read_mail
from tests.test_assignment import checkup_doctor, received_case


@pytest.fixture
def app(app):
    return with_checkup(app)


def subjects(mail, to: str) -> list[str]:
    return [m["Subject"] for m in mail if m["To"] == to]


async def test_each_step_tells_the_people_it_concerns_once(running_app, settings, monkeypatch):
    # The clock is moved past a deadline below: today's digests are not what this is about.
    running_app.state.scheduler.jobs.pop("digests")
    coordinator = await make_person("coordinator", "coord@example.com")
    first = await checkup_doctor("first@example.com")
    second = await checkup_doctor("second@example.com")
    case = await received_case(running_app, preferred=first)
    patient = (await cases.subject_of(case)).name and await _patient_email(case)

    # Offered to the preferred doctor: they are told, with their link and deadline.
    mail = await read_mail(settings)
    [offer_mail] = [m for m in mail if m["To"] == first.email]
    assert offer_mail["Subject"] == f"A case is offered to you: {case.reference}"
    body = offer_mail.get_content()
    assert f"/doctor/cases/{case.uid}" in body and "Gallstones" not in body

    # The first declines: the coordinators hear it moved on; the second doctor is offered it.
    await assignment.decline(case, first.user, "On leave", ip=None)
    mail = await read_mail(settings)
    assert subjects(mail, coordinator.email) == [
        f"Case {case.reference}: offered to another doctor"
    ]
    assert "The doctor offered it declined." in _last(mail, coordinator.email)
    assert "On leave" not in _last(mail, coordinator.email)  # staff's words stay on the page
    assert subjects(mail, second.email) == [f"A case is offered to you: {case.reference}"]

    # The second lets it lapse (time frozen past the deadline): nobody else can take it.
    [offer] = await Offer.objects().where(
        (Offer.case == case.id) & (Offer.doctor == second.user.id)
    )
    later = offer.respond_by + timedelta(seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    await assignment.expire_offers()
    mail = await read_mail(settings)
    assert subjects(mail, coordinator.email)[-1] == f"Case {case.reference} needs a doctor"
    assert "did not answer in time" in _last(mail, coordinator.email)
    assert 'It waits in "To assign".' in _last(mail, coordinator.email)

    # A coordinator offers it to a new doctor, who accepts (the patient is told), then hands
    # it back.
    third = await checkup_doctor("third@example.com")
    case = await cases.get_case(str(case.uid))
    await assignment.offer_to(case, str(third.user.uid), coordinator.user, ip=None)
    await assignment.accept(case, third.user, no_conflict=True, ip=None)
    mail = await read_mail(settings)
    assert subjects(mail, patient)[-1] == f"A specialist is reviewing your request {case.reference}"
    await assignment.hand_back(case, third.user, "Conflict found later", ip=None)
    mail = await read_mail(settings)
    assert any("handed it back" in m.get_content() for m in mail if m["To"] == coordinator.email)

    # Nothing twice: each step one message to each person it concerns.
    assert Counter(subjects(mail, coordinator.email)) == Counter(
        {
            f"Case {case.reference}: offered to another doctor": 1,
            f"Case {case.reference} needs a doctor": 2,
        }
    )
    for doctor in (first, second, third):
        assert subjects(mail, doctor.email) == [f"A case is offered to you: {case.reference}"]
    assert (
        subjects(mail, patient).count(f"A specialist is reviewing your request {case.reference}")
        == 1
    )


async def test_a_case_nobody_can_take_is_announced_to_the_coordinators(running_app, settings):
    coordinator = await make_person("coordinator", "coord2@example.com")
    case = await received_case(running_app)  # no doctor of the specialty
    mail = await read_mail(settings)
    assert subjects(mail, coordinator.email) == [f"Case {case.reference} needs a doctor"]
    assert "no doctor can take it now" in _last(mail, coordinator.email)


async def test_the_patient_hears_when_the_expected_date_moves(running_app, settings, monkeypatch):
    coordinator = await make_person("coordinator", "coord3@example.com")
    case = await received_case(running_app)
    patient = await _patient_email(case)
    await completeness.ask(case, coordinator.user, {"message": "A clearer photo"}, CHECKUP, ip=None)
    later = clock.now() + timedelta(days=7)  # at least five working days cross
    monkeypatch.setattr(clock, "now", lambda: later)
    [request] = await completeness.requests_of(case, CHECKUP)
    await completeness.close(case, coordinator.user, str(request.request.uid), "received", ip=None)
    case = await cases.get_case(str(case.uid))
    mail = await read_mail(settings)
    [moved] = [m for m in mail if m["To"] == patient and "new expected date" in m["Subject"]]
    body = moved.get_content()
    assert case.due_on.strftime("%A %-d %B %Y") in body
    assert "paused, waiting for your reply" in body and "clearer photo" not in body


async def _patient_email(case) -> str:
    from core.accounts.tables import User

    row = await User.select(User.email).where(User.id == case.patient).first()
    return row["email"]


def _last(mail, to: str) -> str:
    return [m for m in mail if m["To"] == to][-1].get_content()

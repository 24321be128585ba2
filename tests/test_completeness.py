"""Completeness (issue 13; core/completeness, core/cases/pauses.py): a coordinator asks the
patient or their doctor for more and the case waits with its clock paused, the due date moving
by the working days it waited; physical materials sent by post hold a case up until a
coordinator records their arrival, and their return is recorded once."""

from __future__ import annotations

from contextlib import aclosing
from datetime import date, datetime
from zoneinfo import ZoneInfo

import holidays
import pytest

from core import clock
from core.assignment import service as assignment
from core.cases import pauses, reception
from core.cases import service as cases
from core.cases.tables import Case, CasePause
from core.completeness import service as completeness
from core.completeness.tables import RecordsRequest
from core.documents import access, links
from core.errors import InvalidInput, Refused
from tests.conftest import open_client
from tests.payment_support import CHECKUP, add_letter, submitted_case, with_checkup
from tests.support import Person, make_person, post_form, read_mail, sign_in
from tests.test_assignment import checkup_doctor

KARACHI = ZoneInfo("Asia/Karachi")  # the hospital's time zone in the test settings (PK, Sat-Sun)


@pytest.fixture
def app(app):
    return with_checkup(app)


def at(day: str, time: str = "10:00") -> datetime:
    """An instant in the hospital's time zone."""
    return datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=KARACHI)


class Frozen:
    """clock.now() stands still at `now` until moved (the app's worker reads it too)."""

    def __init__(self, monkeypatch, now: datetime) -> None:
        self.now = now
        monkeypatch.setattr(clock, "now", lambda: self.now)


# The rule for part days -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("started", "ended", "received", "moved"),
    [
        # Begun and ended the same day: nothing.
        (at("2026-12-08", "09:00"), at("2026-12-08", "17:00"), at("2026-12-07"), 0),
        # Friday evening to Monday morning: Monday counts, the weekend does not.
        (at("2026-12-11", "16:00"), at("2026-12-14", "09:00"), at("2026-12-07"), 1),
        # Thursday to Monday across Quaid-e-Azam Day (Friday 25 December) and the weekend.
        (at("2026-12-24"), at("2026-12-28"), at("2026-12-21"), 1),
        # Wednesday to Tuesday across the same: Thu 24, Mon 28, Tue 29.
        (at("2026-12-23", "12:00"), at("2026-12-29", "09:00"), at("2026-12-21"), 3),
        # Across midnight in Karachi (the same day in UTC): one day.
        (at("2026-12-07", "23:30"), at("2026-12-08", "00:30"), at("2026-12-07", "08:00"), 1),
        # Begun just after midnight in Karachi (the day before in UTC): the same day, nothing.
        (at("2026-12-08", "00:30"), at("2026-12-08", "17:00"), at("2026-12-07", "08:00"), 0),
        # Waiting since before receipt: only the time on the clock counts (from Monday).
        (at("2026-12-04"), at("2026-12-08"), at("2026-12-07"), 1),
        # Never received: the clock had not started.
        (at("2026-12-04"), at("2026-12-08"), None, 0),
    ],
)
def test_a_pause_moves_the_due_date_by_the_working_days_it_crossed(
    settings, started, ended, received, moved
) -> None:
    assert date(2026, 12, 25) in holidays.country_holidays("PK", years=2026)
    assert (settings.time_zone, settings.weekend_days) == ("Asia/Karachi", [5, 6])
    assert pauses.days_paused(started, ended, received) == moved


# Asking the patient --------------------------------------------------------------------------


async def paid_case(app, *, diagnosis: str = "Gallstones", letter: bool = True):
    """A checkup case submitted, paid with the sandbox and (by default) with its letter, and its
    patient."""
    patient = await make_person("patient", country="PK")
    client = open_client(app)
    await sign_in(client, patient)
    async with aclosing(client):
        case = await submitted_case(client, diagnosis=diagnosis)
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
        await post_form(client, response.headers["location"], {"outcome": "succeed"})
    if letter:
        await add_letter(app, case)
    return await cases.get_case(str(case.uid)), patient


async def patient_page(app, patient: Person, case: Case) -> str:
    client = open_client(app)
    await sign_in(client, patient)
    async with aclosing(client):
        response = await client.get(f"/cases/{case.uid}")
        assert response.status_code == 200
        return response.text


async def test_asking_the_patient_pauses_the_clock_and_the_reply_moves_the_due_date(
    running_app, settings, monkeypatch
) -> None:
    time = Frozen(monkeypatch, at("2026-12-07"))  # a Monday
    doctor = await checkup_doctor("doctor@example.com")
    coordinator = await make_person("coordinator")
    case, patient = await paid_case(running_app)
    assert (case.status, case.due_on) == ("offered", date(2026, 12, 14))
    await assignment.accept(case, doctor.user, no_conflict=True, ip=None)
    case = await cases.get_case(str(case.uid))
    assert not access.may_add_records(patient.user, case)  # accepted: records are closed

    time.now = at("2026-12-09", "11:00")  # Wednesday
    message = "The second page of the letter is missing; please add a photo of it."
    await completeness.ask(case, coordinator.user, {"message": message}, CHECKUP, ip=None)
    case = await cases.get_case(str(case.uid))
    assert case.waiting_since == time.now
    assert cases.due_state(case, date(2026, 12, 14)) == cases.PAUSED  # not at risk: paused
    assert access.may_add_records(patient.user, case)  # while it waits, even when accepted
    page = await patient_page(running_app, patient, case)
    assert message in page and "I have sent it" in page and "is paused since" in page
    assert f'action="/cases/{case.uid}/documents/"' in page

    # The emails say something is needed, never what (it may be medical).
    mail = [m for m in await read_mail(settings) if m["To"] == patient.email]
    asked = next(m for m in mail if "need something more" in m["Subject"])
    assert "second page" not in asked.get_content() and case.reference in asked.get_content()

    time.now = at("2026-12-14", "09:00")  # the next Monday: Thu, Fri, Mon crossed
    [open_request] = await completeness.requests_of(case, CHECKUP)
    await completeness.answer(
        case, patient.user, str(open_request.request.uid), "Added it.", ip=None
    )
    case = await cases.get_case(str(case.uid))
    assert case.waiting_since is None
    assert (case.due_first, case.due_on) == (date(2026, 12, 14), date(2026, 12, 17))
    [pause] = await CasePause.objects().where(CasePause.case == case.id)
    assert (pause.days_moved, pause.ended_at) == (3, time.now)
    assert not access.may_add_records(patient.user, case)  # closed again
    notes = [event.note for event in await cases.timeline(case)]
    assert "Expected date moved by 3 working days to 17 December 2026 (paused while we waited)" in (
        notes
    )
    page = await patient_page(running_app, patient, case)
    assert "It moved from 14 Dec 2026: paused from 9 Dec 2026 to 14 Dec 2026" in page
    assert "waiting for your reply (3 working days)" in page

    # Answered once; someone else's case does not exist for them.
    with pytest.raises(completeness.RequestNotFound):
        await completeness.answer(case, patient.user, str(open_request.request.uid), "", ip=None)
    other = await make_person("patient", "b@example.com")
    with pytest.raises(cases.CaseNotFound):
        await completeness.answer(case, other.user, str(open_request.request.uid), "", ip=None)


async def test_a_paused_case_is_neither_at_risk_nor_overdue_in_the_queues(
    running_app, monkeypatch
) -> None:
    time = Frozen(monkeypatch, at("2026-12-07"))
    coordinator = await make_person("coordinator")
    case, _ = await paid_case(running_app)  # no doctor: stays received
    overdue = cases.QueueFilter(due="overdue")
    time.now = at("2026-12-16")  # two days after its due date
    assert [c.id for c in await cases.cases_in("received", filters=overdue)] == [case.id]
    await completeness.ask(case, coordinator.user, {"message": "Unreadable"}, CHECKUP, ip=None)
    assert await cases.cases_in("received", filters=overdue) == []
    assert (await cases.counts_in(["received"], overdue))["received"] == 0


async def test_asking_the_patients_doctor_sends_them_a_link_that_works_while_the_case_waits(
    running_app, settings
) -> None:
    doctor = await checkup_doctor("doctor@example.com")
    coordinator = await make_person("coordinator")
    case, patient = await paid_case(running_app)
    await assignment.accept(case, doctor.user, no_conflict=True, ip=None)
    case = await cases.get_case(str(case.uid))

    values = {
        "message": "Your biopsy report from City Lab",
        "audience": "provider",
        "provider_email": "not an address",
    }
    with pytest.raises(InvalidInput) as invalid:
        await completeness.ask(case, coordinator.user, values, CHECKUP, ip=None)
    assert "provider_email" in invalid.value.errors
    values["provider_email"] = "Dr.Aslam@City-Lab.example"
    request = await completeness.ask(case, coordinator.user, values, CHECKUP, ip=None)
    assert request.link is not None

    mail = await read_mail(settings)
    [to_doctor] = [m for m in mail if m["To"].lower() == "dr.aslam@city-lab.example"]
    body = to_doctor.get_content()
    assert "biopsy" not in body and "City Lab" not in body  # the link and the reference only
    token = body.split("/upload/")[1].split()[0]
    assert await links.resolve(token) is not None  # works on an accepted case while it waits
    [line] = await links.links_of(case)
    assert line.active  # listed for the patient, who may revoke it

    await completeness.close(case, coordinator.user, str(request.uid), "received", ip=None)
    assert await links.resolve(token) is None  # the case stopped waiting: records closed
    with pytest.raises(completeness.RequestNotFound):
        await completeness.close(case, coordinator.user, str(request.uid), "withdrawn", ip=None)
    with pytest.raises(Refused):  # only staff ask
        await completeness.ask(case, patient.user, {"message": "x"}, CHECKUP, ip=None)


# Physical materials --------------------------------------------------------------------------


async def test_a_case_that_needs_slides_is_received_only_when_they_arrive(
    running_app, settings
) -> None:
    coordinator = await make_person("coordinator")
    case, patient = await paid_case(running_app, diagnosis="Tumour")
    assert case.status == "submitted"  # paid, letter in, slides not yet
    assert reception.missing_records(case, CHECKUP) == ["The glass slides (by post)"]
    page = await patient_page(running_app, patient, case)
    assert "reaches us by post: The glass slides" in page  # the status line says what is missing
    assert "Sent by post" in page and "1 Hospital Road" in page
    assert f'<strong class="reference">{case.reference}</strong>' in page

    # Bad entries re-render the staff page with what was typed and why.
    staff = open_client(running_app)
    await sign_in(staff, coordinator)
    async with aclosing(staff):
        response = await post_form(
            staff,
            f"/staff/cases/{case.uid}/materials",
            {"material": "slides", "count": "0", "identifiers": "S26-0042 A1", "arrived_on": "x"},
        )
        assert response.status_code == 400
        assert "from 1 to 500" in response.text and 'value="S26-0042 A1"' in response.text
        assert "Give a date" in response.text
        response = await post_form(
            staff,
            f"/staff/cases/{case.uid}/materials",
            {"material": "slides", "count": "3", "identifiers": "S26-0042 A1-A3"},
        )
        assert response.status_code == 303
    case = await cases.get_case(str(case.uid))
    assert case.status == "received" and case.due_on is not None
    notes = [event.note for event in await cases.timeline(case)]
    assert "Arrived by post: The glass slides" in notes

    [line] = [m for m in (await completeness.materials_of(case, CHECKUP)).lines if m.arrived]
    arrival = line.arrivals[0]
    with pytest.raises(InvalidInput) as invalid:
        await completeness.record_return(
            case,
            coordinator.user,
            str(arrival.uid),
            {"returned_on": "2020-01-01", "courier_ref": "TCS 123"},
            ip=None,
        )
    assert invalid.value.errors == {"returned_on": "It cannot go back before it arrived."}
    await completeness.record_return(
        case, coordinator.user, str(arrival.uid), {"courier_ref": "TCS 123"}, ip=None
    )
    with pytest.raises(Refused, match="already"):
        await completeness.record_return(
            case, coordinator.user, str(arrival.uid), {"courier_ref": "TCS 456"}, ip=None
        )
    page = await patient_page(running_app, patient, case)
    assert "Sent back to the sender on" in page and "TCS 123" in page


async def test_a_case_without_the_condition_does_not_wait_for_slides(running_app) -> None:
    case, _ = await paid_case(running_app, diagnosis="Gallstones")
    assert case.status == "received"
    materials = await completeness.materials_of(case, CHECKUP)
    assert materials.asked == [] and len(materials.lines) == 2  # staff may still record them


async def test_asking_for_a_material_waits_until_it_arrives(running_app, monkeypatch) -> None:
    time = Frozen(monkeypatch, at("2026-12-07"))
    coordinator = await make_person("coordinator")
    case, patient = await paid_case(running_app)
    values = {"message": "The blocks, for more stains", "by_post": "blocks"}
    request = await completeness.ask(case, coordinator.user, values, CHECKUP, ip=None)
    pause = await CasePause.objects().where(CasePause.case == case.id).first()
    assert pause.reason == pauses.MATERIALS
    # The patient cannot answer for the package; its arrival answers.
    with pytest.raises(Refused, match="package"):
        await completeness.answer(case, patient.user, str(request.uid), "", ip=None)
    time.now = at("2026-12-08", "15:00")
    arrived = {"material": "blocks", "count": "2", "identifiers": "B1, B2"}
    await completeness.record_arrival(case, coordinator.user, arrived, CHECKUP, ip=None)
    case = await cases.get_case(str(case.uid))
    assert case.waiting_since is None and case.due_on == date(2026, 12, 15)  # moved by Tuesday
    [row] = await RecordsRequest.objects().where(RecordsRequest.case == case.id)
    assert (row.status, row.closed_by) == ("received", coordinator.user.id)


async def test_a_closed_case_takes_no_requests_and_no_materials(running_app) -> None:
    coordinator = await make_person("coordinator")
    case, _ = await paid_case(running_app)
    await reception.decline(case, coordinator.user, "Out of scope", ip=None)
    with pytest.raises(Refused, match="between submission and the report"):
        await completeness.ask(case, coordinator.user, {"message": "More"}, CHECKUP, ip=None)
    arrived = {"material": "slides", "count": "1", "identifiers": "A1"}
    with pytest.raises(Refused, match="between submission and the report"):
        await completeness.record_arrival(case, coordinator.user, arrived, CHECKUP, ip=None)

"""The doctor on a case, and what that doctor may read (docs/security.md 9, HIPAA a(1)).

Records are read by the owning patient, coordinators, admins and the doctor the case is assigned
to now: a reassigned doctor loses access at once. The coordinator's pages for choosing a doctor
come with triage; the rule and the service call that every page will use are here.
"""

from __future__ import annotations

from contextlib import aclosing

import pytest

from core.accounts.tables import DoctorSpecialty
from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.documents.tables import Document
from tests.conftest import open_client
from tests.payment_support import add_letter, submitted_case, with_checkup
from tests.support import make_person, post_form, sign_in


@pytest.fixture
def app(app):
    return with_checkup(app)


async def checkup_doctor(email: str):
    person = await make_person("doctor", email)
    await DoctorSpecialty.insert(DoctorSpecialty(doctor=person.user.id, specialty="checkup"))
    return person


async def received_case(app):
    """A checkup case, paid with the sandbox and with its letter: received for review."""
    client = open_client(app)
    await sign_in(client, await make_person("patient", country="PK"))
    async with aclosing(client):
        case = await submitted_case(client)
        response = await post_form(client, f"/cases/{case.uid}/payments/", {"provider": "sandbox"})
        await post_form(client, response.headers["location"], {"outcome": "succeed"})
    await add_letter(app, case)
    case = await cases.get_case(str(case.uid))
    assert case.status == "received"
    return case


async def test_only_the_doctor_on_the_case_reads_its_records(running_app) -> None:
    case = await received_case(running_app)
    [letter] = await Document.objects().where(Document.case == case.id)
    url = f"/cases/{case.uid}/documents/{letter.uid}"
    coordinator = await make_person("coordinator")
    first = await checkup_doctor("first-doctor@example.com")
    second = await checkup_doctor("second-doctor@example.com")
    first_client, second_client = open_client(running_app), open_client(running_app)
    await sign_in(first_client, first)
    await sign_in(second_client, second)
    async with aclosing(first_client), aclosing(second_client):
        # Nobody assigned yet: no doctor reads anything.
        assert (await first_client.get(url)).status_code == 404

        case = await cases.assign(case, first.user, coordinator.user, ip=None)
        assert case.status == "assigned"
        response = await first_client.get(url)
        assert response.status_code == 200 and response.content.startswith(b"%PDF-1.7")
        assert (await second_client.get(url)).status_code == 404

        # Reassigned: the first doctor's access ends with the change.
        case = await cases.assign(case, second.user, coordinator.user, ip=None)
        assert (await cases.get_case(str(case.uid))).assigned_doctor == second.user.id
        assert (await first_client.get(url)).status_code == 404
        assert (await second_client.get(url)).status_code == 200
        assert (await second_client.get(f"{url}/preview")).status_code == 200

    downloads = await AuditEvent.objects().where(
        (AuditEvent.action == "document.download") & (AuditEvent.case_id == str(case.uid))
    )
    assert {row.actor_uid for row in downloads} >= {str(first.user.uid), str(second.user.uid)}
    denied = await AuditEvent.objects().where(
        (AuditEvent.action == "access.denied") & (AuditEvent.actor_uid == str(first.user.uid))
    )
    assert len(denied) >= 2  # before assignment and after reassignment


async def test_assignment_rules(running_app) -> None:
    case = await received_case(running_app)
    coordinator = await make_person("coordinator")
    doctor = await checkup_doctor("checkup-doctor@example.com")
    outsider = await make_person("doctor", "other-specialty@example.com")
    patient = await make_person("patient")

    with pytest.raises(cases.TransitionRefused, match="doctor of this specialty"):
        await cases.assign(case, outsider.user, coordinator.user, ip=None)
    with pytest.raises(cases.TransitionRefused, match="doctor of this specialty"):
        await cases.assign(case, patient.user, coordinator.user, ip=None)
    with pytest.raises(cases.TransitionRefused, match="Your account cannot do this"):
        await cases.assign(case, doctor.user, doctor.user, ip=None)
    assert (await cases.get_case(str(case.uid))).assigned_doctor is None

    case = await cases.assign(case, doctor.user, coordinator.user, ip=None)
    # Only the doctor on the case starts its review.
    with pytest.raises(cases.CaseNotFound):
        await cases.transition(case, "start_review", outsider.user, ip=None)
    case = await cases.transition(case, "start_review", doctor.user, ip=None)
    assert case.status == "in_review"
    assert await AuditEvent.exists().where(AuditEvent.action == "case.assigned_doctor")


async def test_coordinators_open_records_from_the_staff_case_page(running_app) -> None:
    case = await received_case(running_app)
    [letter] = await Document.objects().where(Document.case == case.id)
    coordinator = open_client(running_app)
    person = await make_person("coordinator")
    await sign_in(coordinator, person)
    async with aclosing(coordinator):
        page = (await coordinator.get(f"/staff/cases/{case.uid}")).text
        href = f"/cases/{case.uid}/documents/{letter.uid}"
        assert f'href="{href}"' in page and f'href="{href}/view"' in page
        response = await coordinator.get(href)
        assert response.status_code == 200 and response.content.startswith(b"%PDF-1.7")
    assert await AuditEvent.exists().where(
        (AuditEvent.action == "document.download") & (AuditEvent.actor_uid == str(person.user.uid))
    )

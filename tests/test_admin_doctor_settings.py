"""An admin sets a doctor's reviewing settings and out-of-office days on the doctor's staff form
(issue 13): the same rules as the doctor's own page (core/accounts/doctors.py), routing sees
them, the audit log names the admin, and nobody else may use these routes."""

from __future__ import annotations

import json
from contextlib import aclosing
from datetime import timedelta

import pytest

from core.accounts import doctors
from core.accounts.tables import DoctorAway, DoctorProfile, DoctorSpecialty
from core.assignment import service as assignment
from core.audit.tables import AuditEvent
from tests.conftest import open_client
from tests.payment_support import with_checkup
from tests.support import make_person, post_form, sign_in
from tests.test_assignment import checkup_doctor, received_case

REVIEWING = {
    "title": "Consultant radiologist",
    "registration_number": "12345-P",
    "registering_body": "Pakistan Medical and Dental Council",
    "max_active_cases": "4",
    "reviews_children": "no",
    "sub_radiology": ["breast", "neuroradiology", "not-declared"],
}


@pytest.fixture
def app(app):
    return with_checkup(app)


def _specialties(app) -> dict:
    return {s.slug: s for s in app.state.plugins.specialties()}


async def _audited(action: str) -> list[AuditEvent]:
    return await AuditEvent.objects().where(AuditEvent.action == action)


async def test_an_admin_sets_what_a_doctor_reviews(client, running_app) -> None:
    admin = await make_person("admin", "settings-admin@example.com")
    doctor = await make_person("doctor", "admin-edited@example.com")  # a radiologist
    await sign_in(client, admin)
    page = (await client.get(f"/admin/staff/{doctor.user.uid}")).text
    assert "Neuroradiology" in page and "Out of office" in page and "Cases held now" in page

    saved = await post_form(client, f"/admin/staff/{doctor.user.uid}/reviewing", REVIEWING)
    assert saved.status_code == 303
    assert saved.headers["location"].startswith(f"/admin/staff/{doctor.user.uid}?notice=")

    seen = await doctors.settings_of(doctor.user, _specialties(running_app))
    assert (seen.title, seen.max_active_cases, seen.reviews_children) == (
        "Consultant radiologist",
        4,
        False,
    )
    [cover] = seen.specialties
    assert cover.covered == {"breast", "neuroradiology"}  # not what radiology does not declare
    [candidate] = await assignment.candidates("radiology", assignment.today())
    assert (candidate.max_active, candidate.subspecialties) == (4, {"breast", "neuroradiology"})

    [event] = await _audited("doctor.settings")
    assert (event.actor_uid, event.actor_role, event.subject_uid) == (
        str(admin.user.uid),
        "admin",
        str(doctor.user.uid),
    )


async def test_a_refused_settings_form_keeps_what_was_typed(client) -> None:
    admin = await make_person("admin", "refused-admin@example.com")
    doctor = await make_person("doctor", "refused-doctor@example.com")
    await sign_in(client, admin)
    refused = await post_form(
        client,
        f"/admin/staff/{doctor.user.uid}/reviewing",
        {**REVIEWING, "max_active_cases": "0"},
    )
    assert refused.status_code == 400
    assert "from 1 to 100" in refused.text and 'value="12345-P"' in refused.text
    assert not await DoctorProfile.exists().where(DoctorProfile.doctor == doctor.user.id)
    assert not await _audited("doctor.settings")


async def test_an_admin_sets_a_doctor_out_of_office(client) -> None:
    admin = await make_person("admin", "away-admin@example.com")
    doctor = await make_person("doctor", "away-doctor@example.com")
    await sign_in(client, admin)
    on = assignment.today()
    last = on + timedelta(days=3)

    wrong = await post_form(
        client,
        f"/admin/staff/{doctor.user.uid}/away",
        {"first_day": str(last), "last_day": str(on)},
    )
    assert wrong.status_code == 400 and "cannot be before the first" in wrong.text
    assert f'value="{last}"' in wrong.text and f'value="{on}"' in wrong.text
    assert not await DoctorAway.exists().where(DoctorAway.doctor == doctor.user.id)

    added = await post_form(
        client,
        f"/admin/staff/{doctor.user.uid}/away",
        {"first_day": str(on), "last_day": str(last)},
    )
    assert added.status_code == 303
    assert await assignment.away_today("radiology") == {doctor.user.id: last}
    [event] = await _audited("doctor.away_added")
    assert (event.actor_uid, event.subject_uid) == (str(admin.user.uid), str(doctor.user.uid))

    # A range is removed only through its own doctor's form.
    [away] = await DoctorAway.objects().where(DoctorAway.doctor == doctor.user.id)
    other = await make_person("doctor", "away-other@example.com")
    elsewhere = await post_form(client, f"/admin/staff/{other.user.uid}/away/{away.uid}/remove")
    assert elsewhere.status_code == 404
    removed = await post_form(client, f"/admin/staff/{doctor.user.uid}/away/{away.uid}/remove")
    assert removed.status_code == 303
    assert await assignment.away_today("radiology") == {}
    [event] = await _audited("doctor.away_removed")
    assert event.actor_uid == str(admin.user.uid)


def _forms(uid: object) -> dict[str, dict]:
    """The two forms of a staff member's doctor part, filled in right."""
    day = str(assignment.today())
    return {
        f"/admin/staff/{uid}/reviewing": REVIEWING,
        f"/admin/staff/{uid}/away": {"first_day": day, "last_day": day},
    }


async def test_only_admins_and_only_for_doctors(client, running_app) -> None:
    coordinator = await make_person("coordinator", "not-admin@example.com")
    doctor = await make_person("doctor", "guarded-doctor@example.com")
    await sign_in(client, coordinator)
    for path, data in _forms(doctor.user.uid).items():
        assert (await post_form(client, path, data)).status_code == 403
    assert not await DoctorProfile.exists().where(DoctorProfile.doctor == doctor.user.id)
    assert not await DoctorAway.exists().where(DoctorAway.doctor == doctor.user.id)

    # Only doctors have these settings: a coordinator's staff form has none to post to.
    admin = open_client(running_app)
    await sign_in(admin, await make_person("admin", "guard-admin@example.com"))
    async with aclosing(admin):
        page = (await admin.get(f"/admin/staff/{coordinator.user.uid}")).text
        assert "Out of office" not in page
        for path, data in _forms(coordinator.user.uid).items():
            assert (await post_form(admin, path, data)).status_code == 404
    assert not await _audited("doctor.settings") and not await _audited("doctor.away_added")


async def test_the_doctors_own_changes_name_the_doctor(client) -> None:
    doctor = await make_person("doctor", "own-actor@example.com")
    await sign_in(client, doctor)
    assert (await post_form(client, "/doctor/settings", REVIEWING)).status_code == 303
    [event] = await _audited("doctor.settings")
    assert event.actor_uid == event.subject_uid == str(doctor.user.uid)


async def test_saving_the_staff_form_keeps_the_subspecialties(client) -> None:
    admin = await make_person("admin", "keep-admin@example.com")
    doctor = await make_person("doctor", "keep-doctor@example.com")
    await sign_in(client, admin)
    await post_form(client, f"/admin/staff/{doctor.user.uid}/reviewing", REVIEWING)
    account = {"full_name": "Dr Kept", "role": "doctor", "specialties": ["radiology", "general"]}
    assert (await post_form(client, f"/admin/staff/{doctor.user.uid}", account)).status_code == 303
    links = await DoctorSpecialty.objects().where(DoctorSpecialty.doctor == doctor.user.id)
    covered = {link.specialty: json.loads(link.subspecialties) for link in links}
    assert covered == {"radiology": ["breast", "neuroradiology"], "general": []}


async def test_the_staff_form_lists_the_cases_a_doctor_holds(client, running_app) -> None:
    doctor = await checkup_doctor("holding@example.com")
    case = await received_case(running_app, preferred=doctor)
    assert case.assigned_doctor == doctor.user.id
    await sign_in(client, await make_person("admin", "held-admin@example.com"))
    page = (await client.get(f"/admin/staff/{doctor.user.uid}")).text
    assert f'href="/staff/cases/{case.uid}"' in page and "offered, answer by" in page

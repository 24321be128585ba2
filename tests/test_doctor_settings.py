"""A doctor's reviewing settings (issue 13; core/accounts/doctors.py): what routing reads —
subspecialties, children, the most cases held, out-of-office days — set by the doctor."""

from __future__ import annotations

import json
from contextlib import aclosing
from datetime import timedelta

from core import clock
from core.accounts.tables import DoctorAway, DoctorProfile, DoctorSpecialty
from core.assignment import service as assignment
from tests.conftest import open_client
from tests.support import make_person, post_form, sign_in


async def test_a_doctor_sets_what_they_review(client) -> None:
    doctor = await make_person("doctor", "settings@example.com")  # a radiologist
    await sign_in(client, doctor)
    page = (await client.get("/doctor/settings")).text
    assert "Neuroradiology" in page and "Out of office" in page
    refused = await post_form(
        client,
        "/doctor/settings",
        {"title": "Consultant radiologist", "max_active_cases": "0", "reviews_children": "no"},
    )
    assert refused.status_code == 400
    assert "from 1 to 100" in refused.text and 'value="Consultant radiologist"' in refused.text
    assert not await DoctorProfile.exists().where(DoctorProfile.doctor == doctor.user.id)

    form = {
        "title": "Consultant radiologist",
        "registration_number": "12345-P",
        "registering_body": "Pakistan Medical and Dental Council",
        "max_active_cases": "3",
        "reviews_children": "no",
    }
    body = {**form, "sub_radiology": ["breast", "not-declared"]}
    saved = await client.post(
        "/doctor/settings", data=body, headers={"x-csrftoken": client.cookies.get("csrftoken", "")}
    )
    assert saved.status_code == 303
    profile = await DoctorProfile.objects().where(DoctorProfile.doctor == doctor.user.id).first()
    assert (profile.title, profile.max_active_cases, profile.reviews_children) == (
        "Consultant radiologist",
        3,
        False,
    )
    link = await DoctorSpecialty.objects().where(DoctorSpecialty.doctor == doctor.user.id).first()
    assert json.loads(link.subspecialties) == ["breast"]  # what the specialty does not declare
    on = clock.local_date(clock.now(), "Asia/Karachi")
    [seen] = await assignment.candidates("radiology", on)
    assert (seen.subspecialties, seen.reviews_children, seen.max_active) == (
        frozenset({"breast"}),
        False,
        3,
    )


async def test_out_of_office_days_keep_offers_away(client, running_app) -> None:
    doctor = await make_person("doctor", "away-days@example.com")
    other = await make_person("doctor", "other-away@example.com")
    await sign_in(client, doctor)
    on = clock.local_date(clock.now(), "Asia/Karachi")
    last = on + timedelta(days=3)
    wrong = await post_form(
        client, "/doctor/settings/away", {"first_day": str(last), "last_day": str(on)}
    )
    assert wrong.status_code == 400 and "cannot be before the first" in wrong.text
    added = await post_form(
        client, "/doctor/settings/away", {"first_day": str(on), "last_day": str(last)}
    )
    assert added.status_code == 303
    [seen] = [
        c for c in await assignment.candidates("radiology", on) if c.doctor.id == doctor.user.id
    ]
    assert seen.away_until == last
    [away] = await DoctorAway.objects().where(DoctorAway.doctor == doctor.user.id)
    # Only its doctor removes a range.
    stranger = open_client(running_app)
    await sign_in(stranger, other)
    async with aclosing(stranger):
        theirs = await post_form(stranger, f"/doctor/settings/away/{away.uid}/remove", {})
        assert theirs.status_code == 404
    removed = await post_form(client, f"/doctor/settings/away/{away.uid}/remove", {})
    assert removed.status_code == 303
    assert not await DoctorAway.exists().where(DoctorAway.doctor == doctor.user.id)


async def test_the_wizard_says_a_doctor_is_away_instead_of_offering_them(client) -> None:
    away = await make_person("doctor", "wizard-away@example.com")
    here = await make_person("doctor", "wizard-here@example.com")
    on = clock.local_date(clock.now(), "Asia/Karachi")
    last = on + timedelta(days=7)
    await DoctorAway.insert(DoctorAway(doctor=away.user.id, first_day=on, last_day=last))
    await sign_in(client, await make_person("patient", "wizard-patient@example.com"))
    started = await post_form(client, "/requests/new", {"specialty": "radiology"})
    uid = started.headers["location"].split("/")[2]
    page = (await client.get(f"/requests/{uid}/doctor")).text
    assert f"away until {last.strftime('%-d %B')}" in page
    refused = await post_form(
        client, f"/requests/{uid}/doctor", {"preferred_doctor": str(away.user.uid)}
    )
    assert refused.status_code == 400 and "is away until" in refused.text
    chosen = await post_form(
        client, f"/requests/{uid}/doctor", {"preferred_doctor": str(here.user.uid)}
    )
    assert chosen.status_code == 303

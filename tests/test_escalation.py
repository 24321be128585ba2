"""The turnaround's escalation ladder (issue 14; core/cases/escalation.py), with the clock
frozen: a case at risk alerts the coordinators once; an overdue case alerts the coordinators and
the department lead and tells the patient a later date, once; a paused case alerts nobody."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from core.accounts import doctors, preferences
from core.cases import escalation
from core.cases import service as cases
from core.completeness import service as completeness
from tests.payment_support import CHECKUP, with_checkup
from tests.support import make_person, read_mail
from tests.test_assignment import checkup_doctor
from tests.test_completeness import Frozen, paid_case, patient_page

KARACHI = ZoneInfo("Asia/Karachi")


@pytest.fixture
def app(app):
    return with_checkup(app)


def at(day: str, time: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{time}").replace(tzinfo=KARACHI)


def subjects(mail, to: str) -> list[str]:
    """The turnaround alerts `to` received (other messages left out)."""
    words = ("is at risk", "is overdue", "is late")
    return [m["Subject"] for m in mail if m["To"] == to and any(w in m["Subject"] for w in words)]


async def test_at_risk_then_overdue_each_alert_once(running_app, settings, monkeypatch) -> None:
    # The test runs the job itself, twice at once and again; the app's worker leaves it be.
    running_app.state.scheduler.jobs.pop("turnaround_alerts")
    time = Frozen(monkeypatch, at("2026-12-07"))  # Monday: due Monday 14 December
    coordinator = await make_person("coordinator", "coord@example.com")
    digest_only = await make_person("coordinator", "digest@example.com")
    await preferences.save(
        digest_only.user,
        {"digest_hour": ["8"], "digest_only": [preferences.AT_RISK, preferences.OVERDUE]},
    )
    admin = await make_person("admin", "admin@example.com")
    lead = await checkup_doctor("lead@example.com", max_active=0)  # takes no cases
    other = await checkup_doctor("not-lead@example.com", max_active=0)
    await doctors.save_settings(
        lead.user,
        {"lead": ["checkup"], "reviews_children": ["yes"], "max_active_cases": ["1"]},
        {"checkup": CHECKUP},
        by=admin.user,
        ip=None,
    )
    case, patient = await paid_case(running_app)
    assert case.due_on == date(2026, 12, 14)

    time.now = at("2026-12-10")  # Thursday: two working days left
    assert await escalation.run() == 0
    time.now = at("2026-12-11", "09:00")  # Friday: Monday is the next working day
    # Two runs at once (as two processes would, were the schedule not there) and one more:
    # still once.
    await asyncio.gather(escalation.run(), escalation.run())
    await escalation.run()
    mail = await read_mail(settings)
    assert subjects(mail, coordinator.email) == [
        f"Case {case.reference} is at risk: due Monday 14 December 2026"
    ]
    assert subjects(mail, lead.email) == [] and subjects(mail, patient.email) == []

    time.now = at("2026-12-15", "08:00")  # Tuesday: overdue
    await asyncio.gather(escalation.run(), escalation.run())
    await escalation.run()
    mail = await read_mail(settings)
    overdue = f"Case {case.reference} is overdue: it was due Monday 14 December 2026"
    assert Counter(subjects(mail, coordinator.email))[overdue] == 1
    assert subjects(mail, lead.email) == [overdue]
    assert subjects(mail, other.email) == []  # not the lead
    assert subjects(mail, digest_only.email) == []  # they read it in their daily digest
    late = [m for m in mail if m["To"] == patient.email and "is late" in m["Subject"]]
    assert len(late) == 1
    assert "Thursday 17 December 2026" in late[0].get_content()  # two working days on
    case = await cases.get_case(str(case.uid))
    assert case.late_expected_on == date(2026, 12, 17)
    page = await patient_page(running_app, patient, case)
    assert "your report is late" in page and "we now expect it by <strong>Thu 17 Dec 2026" in page


async def test_a_paused_case_alerts_nobody(running_app, settings, monkeypatch) -> None:
    time = Frozen(monkeypatch, at("2026-12-07"))
    coordinator = await make_person("coordinator", "coord@example.com")
    case, _ = await paid_case(running_app)
    await completeness.ask(case, coordinator.user, {"message": "More"}, CHECKUP, ip=None)
    time.now = at("2026-12-16")
    assert await escalation.run() == 0
    mail = await read_mail(settings)
    assert not [s for s in subjects(mail, coordinator.email) if "risk" in s or "overdue" in s]

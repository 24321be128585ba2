"""At risk and overdue (issue 13, "The clock"; core/cases/turnaround.py): a case is due by the
end of its due day in the hospital's time zone; at risk while at most one working day is left;
overdue from the day after. Boundaries across a weekend and a public holiday (Pakistan, 25 Dec
2026, a Friday: Quaid-e-Azam Day)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.cases import service as cases
from core.cases import turnaround
from core.cases.tables import Case
from tests.support import make_person, sign_in

DUE = date(2026, 12, 28)  # a Monday, after Fri 25 Dec (holiday) and the weekend


@pytest.mark.parametrize(
    ("today", "state"),
    [
        (date(2026, 12, 22), ""),  # Tue: Wed, Thu, Mon left
        (date(2026, 12, 23), ""),  # Wed: Thu and Mon left
        (date(2026, 12, 24), "at_risk"),  # Thu: only Mon left (Fri is a holiday)
        (date(2026, 12, 26), "at_risk"),  # Sat
        (DUE, "at_risk"),  # the due day itself
        (DUE + timedelta(days=1), "overdue"),
    ],
)
def test_due_state_at_each_boundary(today: date, state: str) -> None:
    found = turnaround.due_state(today, DUE, country="PK", weekend=[5, 6])
    assert found == state


def test_working_days_left_skip_weekends_and_holidays() -> None:
    left = turnaround.working_days_left
    assert left(date(2026, 12, 23), DUE, country="PK", weekend=[5, 6]) == 2
    assert left(date(2026, 12, 24), DUE, country="PK", weekend=[5, 6]) == 1
    assert left(DUE, DUE, country="PK", weekend=[5, 6]) == 0
    assert left(date(2026, 12, 24), DUE, country="PK", weekend=[6]) == 2  # Saturday works


async def test_only_a_case_on_the_clock_is_at_risk_or_overdue(settings) -> None:
    case = Case(status="received", due_on=DUE)
    assert cases.due_state(case, DUE + timedelta(days=1)) == "overdue"
    for status in ("submitted", "report_ready", "closed", "declined"):
        case.status = status
        assert cases.due_state(case, DUE + timedelta(days=1)) == "", status


async def test_staff_lists_show_overdue_cases(client) -> None:
    patient = await make_person("patient", "due-patient@example.com")
    late = Case(
        reference="SO-2026-77777",
        patient=patient.user.id,
        specialty="general",
        status="received",
        due_on=date(2020, 1, 6),
    )
    await Case.insert(late)
    await sign_in(client, await make_person("coordinator", "due-coordinator@example.com"))
    for url in ("/staff/cases?queue=received", "/dashboard"):
        page = (await client.get(url)).text
        assert "SO-2026-77777" in page and '<span class="due-overdue">Overdue</span>' in page, url


def test_a_countrys_calendar_is_built_once_for_many_rows() -> None:
    # bench/queue.py: rebuilding it for each row was most of a queue page's server time.
    from core.cases import turnaround

    turnaround._calendar.cache_clear()
    for _ in range(25):
        turnaround.working_days_left(
            date(2026, 12, 7), date(2026, 12, 14), country="PK", weekend=[5, 6]
        )
    info = turnaround._calendar.cache_info()
    assert (info.misses, info.hits) == (1, 24)

"""The coordinators' queues (issue 13): narrowed by specialty, by the doctor a case is with and
by turnaround (at risk, overdue), with counts per state under the same filters, links that
keep the filters, and the same number of queries however narrow or long the list."""

from __future__ import annotations

import uuid
from datetime import timedelta

from httpx import AsyncClient

from core import clock
from core.cases.tables import Case
from tests.support import make_person, sign_in
from tests.test_pagination import counting_queries, link

_numbers = iter(range(1, 10**6))


async def add(patient, *, status: str, specialty: str, due, doctor=None) -> Case:
    case = Case(
        uid=uuid.uuid4(),
        reference=f"QF-{next(_numbers):06d}",
        patient=patient.user.id,
        specialty=specialty,
        status=status,
        received_at=clock.now(),
        submitted_at=clock.now(),
        due_on=due,
        assigned_doctor=doctor.user.id if doctor else None,
    )
    await Case.insert(case)
    return case


async def test_queues_narrow_count_and_keep_their_filters(client: AsyncClient, monkeypatch) -> None:
    patient = await make_person("patient", "queues-patient@example.com")
    doctor = await make_person("doctor", "queues-doctor@example.com")
    today = clock.local_date(clock.now(), "Asia/Karachi")
    late = await add(
        patient, status="received", specialty="radiology", due=today - timedelta(days=3)
    )
    soon = await add(patient, status="received", specialty="pathology", due=today)
    fine = await add(
        patient, status="received", specialty="radiology", due=today + timedelta(days=20)
    )
    held = await add(
        patient,
        status="offered",
        specialty="radiology",
        due=today + timedelta(days=20),
        doctor=doctor,
    )
    await sign_in(client, await make_person("coordinator", "queues-coordinator@example.com"))

    async def shown(query: str) -> tuple[str, list[str]]:
        page = (await client.get(f"/staff/cases?{query}")).text
        return page, [c.reference for c in (late, soon, fine, held) if c.reference in page]

    page, refs = await shown("queue=received")
    assert refs == [late.reference, soon.reference, fine.reference]
    start = page.index('aria-label="Queues"')
    tabs = page[start : page.index("</nav>", start)]
    assert "To assign (3)" in tabs and "Offered, not accepted yet (1)" in tabs, tabs
    page, refs = await shown("queue=received&specialty=radiology")
    assert refs == [late.reference, fine.reference] and "To assign (2)" in page
    assert (await shown("queue=received&due=overdue"))[1] == [late.reference]
    assert (await shown("queue=received&due=at_risk"))[1] == [soon.reference]
    page, refs = await shown(f"queue=offered&doctor={doctor.user.uid}")
    assert refs == [held.reference] and "To assign (0)" in page  # nothing with this doctor
    # Unknown values are no filter, never an error.
    page, refs = await shown("queue=received&specialty=nope&doctor=x&due=later")
    assert len(refs) == 3

    # Long lists: a page's links keep the filters; the query count does not grow.
    many = [
        await add(patient, status="received", specialty="radiology", due=today + timedelta(days=9))
        for _ in range(30)
    ]
    url = "/staff/cases?queue=received&specialty=radiology"
    with counting_queries(monkeypatch) as sent:
        first = await client.get(url)
    following = link(first.text, "next")
    assert following is not None and "specialty=radiology" in following
    with counting_queries(monkeypatch) as narrow:
        await client.get("/staff/cases?queue=received&specialty=pathology")
    assert len(sent) == len(narrow), (sent, narrow)
    assert many

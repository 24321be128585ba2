"""What needs a staff member (issue 14; core/pages/attention.py): the "Needs you" page and its
header count, the daily digest at each person's hour in their time zone — once a day, across a
daylight-saving change — and the choice of messages kept for the digest only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import clock
from core.accounts import preferences
from core.pages import attention
from tests.payment_support import with_checkup
from tests.support import make_person, post_form, read_mail, sign_in
from tests.test_assignment import checkup_doctor, received_case


@pytest.fixture
def app(app):
    return with_checkup(app)


def digests(mail, to: str) -> list:
    return [m for m in mail if m["To"] == to and m["Subject"].startswith("What needs you")]


async def test_the_digest_goes_once_a_day_at_the_persons_hour_across_a_clock_change(
    running_app, settings, monkeypatch
) -> None:
    running_app.state.scheduler.jobs.pop("digests")  # the test runs the job itself
    doctor = await checkup_doctor("london@example.com")
    await preferences.save(doctor.user, {"digest_hour": ["8"], "time_zone": ["Europe/London"]})
    case = await received_case(running_app, preferred=doctor)  # offered to them
    await read_mail(settings)  # what the real clock queued goes now, before time is turned back
    now = {"at": datetime(2026, 10, 24, 6, 59, tzinfo=UTC)}  # Saturday 07:59 in London (BST)
    monkeypatch.setattr(clock, "now", lambda: now["at"])

    sent_at = []
    for at in (
        datetime(2026, 10, 24, 6, 59, tzinfo=UTC),  # 07:59 BST: not yet
        datetime(2026, 10, 24, 7, 0, tzinfo=UTC),  # 08:00 BST: sent
        datetime(2026, 10, 24, 12, 0, tzinfo=UTC),  # later that day: not again
        # Sunday 25 October: the clocks went back at 01:00 UTC; 08:00 is now 08:00 UTC.
        datetime(2026, 10, 25, 7, 30, tzinfo=UTC),  # 07:30 GMT: not yet
        datetime(2026, 10, 25, 8, 0, tzinfo=UTC),  # 08:00 GMT: sent
        datetime(2026, 10, 25, 8, 5, tzinfo=UTC),
    ):
        now["at"] = at
        before = len(digests(await read_mail(settings), doctor.email))
        await attention.send_digests()
        if len(digests(await read_mail(settings), doctor.email)) > before:
            sent_at.append(at)
    assert sent_at == [
        datetime(2026, 10, 24, 7, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 8, 0, tzinfo=UTC),
    ]
    body = digests(await read_mail(settings), doctor.email)[0].get_content()
    assert "Offered to you, waiting for your answer: 1" in body
    assert case.reference in body and f"/doctor/cases/{case.uid}" in body
    assert "Gallstones" not in body


async def test_nothing_needs_you_means_no_digest(running_app, settings, monkeypatch) -> None:
    running_app.state.scheduler.jobs.pop("digests")
    coordinator = await make_person("coordinator", "idle@example.com")
    monkeypatch.setattr(clock, "now", lambda: datetime(2026, 12, 8, 6, 0, tzinfo=UTC))  # 11:00
    assert await attention.send_digests() == 0
    assert digests(await read_mail(settings), coordinator.email) == []


async def test_a_coordinator_who_keeps_a_kind_for_the_digest_is_not_emailed_at_once(
    running_app, settings, client
) -> None:
    quiet = await make_person("coordinator", "quiet@example.com")
    loud = await make_person("coordinator", "loud@example.com")
    await sign_in(client, quiet)
    response = await post_form(
        client,
        "/account/messages",
        {"digest_hour": "7", "time_zone": "Nowhere/Town", "digest_only": "needs_a_doctor"},
    )
    assert response.status_code == 400 and 'value="Nowhere/Town"' in response.text
    assert 'value="needs_a_doctor" checked' in response.text  # the entries are kept
    response = await post_form(
        client,
        "/account/messages",
        {"digest_hour": "7", "time_zone": "Asia/Dubai", "digest_only": "needs_a_doctor"},
    )
    assert response.status_code == 303
    case = await received_case(running_app)  # nobody can take it: the coordinators are told
    mail = await read_mail(settings)
    needs = f"Case {case.reference} needs a doctor"
    assert [m["Subject"] for m in mail if m["To"] == loud.email] == [needs]
    assert [m["Subject"] for m in mail if m["To"] == quiet.email] == []

    # It is on their "Needs you" page, and in the header's count (htmx).
    page = (await client.get("/attention")).text
    assert "To assign (1)" in page and case.reference in page
    count = await client.get("/attention", headers={"HX-Request": "true"})
    assert 'aria-label="1 cases need you"' in count.text and "<h1>" not in count.text

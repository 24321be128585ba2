"""The review draft in Chromium, where htmx does the saving: two tabs of one draft never lose
text (the older tab is refused with the newer text shown, keeps its own, and may keep it on
purpose), and a lost connection says so without losing a word."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from core.accounts.tables import DoctorProfile, DoctorSpecialty
from core.assignment import service as assignment
from core.cases import service as cases
from core.reviews.tables import ReviewDraft
from tests.browser.conftest import LiveServer, register_patient, run_async, serving
from tests.browser.test_assignment_journey import _submitted_case, staff_page
from tests.payment_support import with_checkup
from tests.support import Person, make_person


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("draft"), prepare=with_checkup) as live:
        yield live


async def _accepted_case() -> tuple[Person, str]:
    doctor = await make_person("doctor", "draft.doctor@example.com")
    await DoctorSpecialty.insert(DoctorSpecialty(doctor=doctor.user.id, specialty="checkup"))
    await DoctorProfile.insert(DoctorProfile(doctor=doctor.user.id, title="Consultant"))
    email = register_patient("draft.patient@example.com", "Bilal Ahmed")
    uid = await _submitted_case(email, doctor)
    case = await cases.get_case(uid)
    # Received and offered without the payment pages (tested elsewhere): the offer, accepted.
    await cases.transition(case, "receive", None, ip=None)
    await assignment.route(case)
    case = await cases.get_case(uid)
    await assignment.accept(case, doctor.user, no_conflict=True, ip=None)
    return doctor, uid


def _draft_text() -> str:
    async def read() -> str:
        rows = await ReviewDraft.select(ReviewDraft.entries)
        return rows[0]["entries"] if rows else ""

    return run_async(read())


def test_two_tabs_and_a_lost_connection_lose_no_text(server: LiveServer, browser: Browser) -> None:
    doctor, uid = run_async(_accepted_case())
    url = f"{server.url}/doctor/cases/{uid}/review"
    first = staff_page(browser, server, doctor)
    second = first.context.new_page()  # the same doctor's second tab
    first.goto(url)
    second.goto(url)
    status_a, status_b = first.locator("#autosave-status"), second.locator("#autosave-status")

    first.get_by_role("textbox", name="Opinion", exact=True).fill("Written in the first tab")
    expect(status_a).to_contain_text("Saved")
    second.get_by_role("textbox", name="Opinion", exact=True).fill("Written in the second tab")
    expect(status_b).to_contain_text("Not saved")
    conflict = second.locator("#review-conflict")
    expect(conflict).to_contain_text("changed in another tab")
    expect(conflict).to_contain_text("Written in the first tab")
    expect(second.get_by_role("textbox", name="Opinion", exact=True)).to_have_value(
        "Written in the second tab"
    )
    assert "Written in the first tab" in _draft_text()

    # Kept on purpose: the second tab's text replaces the first's.
    second.get_by_role("button", name="Keep this page's text").click()
    expect(second.get_by_text("Your draft is saved.")).to_be_visible()
    expect(second.get_by_role("textbox", name="Opinion", exact=True)).to_have_value(
        "Written in the second tab"
    )
    assert "Written in the second tab" in _draft_text()
    # The first tab is behind now: its next save is refused in turn, its text kept.
    first.get_by_role("textbox", name="Opinion", exact=True).fill("The first tab again")
    expect(first.locator("#review-conflict")).to_contain_text("Written in the second tab")
    first.reload()
    expect(first.get_by_role("textbox", name="Opinion", exact=True)).to_have_value(
        "Written in the second tab"
    )

    # A lost connection: the page says so and keeps the text; back online, it saves.
    second.context.set_offline(True)
    second.get_by_role("textbox", name="Opinion", exact=True).fill("Typed on the train")
    expect(status_b).to_contain_text("no connection")
    second.context.set_offline(False)
    second.get_by_role("textbox", name="Opinion", exact=True).press("End")
    second.get_by_role("textbox", name="Opinion", exact=True).type(".")
    expect(status_b).to_contain_text(re.compile(r"^Saved"))
    assert "Typed on the train." in _draft_text()
    first.context.close()

"""A patient files one request of each built-in kind in Chromium, one of them for a child.

The intake answers are chosen from each specialty's own declaration (the first option of each
required choice, a valid date, the minimum of a number), so the test follows the plugins'
forms as they change, and fills them the way a person does: by their labels.
"""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Locator, Page, expect

from core.forms import Field, Repeating
from core.plugins import PluginHost
from tests.browser.conftest import LiveServer, register_patient, screenshot, sign_in

BUILT_IN = ("general", "surgical", "pathology", "radiology")


@pytest.fixture(scope="module")
def patient(live_server: LiveServer) -> str:
    email = "wizard@example.com"
    return register_patient(email, "Zara Malik")


def exact(text: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(text)}")


def answer(scope: Page | Locator, spec: Field, prefix: str = "") -> None:
    """Give a valid answer to one required field, found by its label as a person would."""
    name = prefix + spec.name
    if spec.kind in ("choice", "yes_no", "scored_category", "multi_choice"):
        group = scope.locator(f"fieldset[id='f-{name}']")
        choice = next((c for c in spec.choices if c.value in ("no", "dont_know")), spec.choices[0])
        if choice.value == "other" and len(spec.choices) > 1:
            choice = spec.choices[0]
        group.get_by_label(exact(choice.label)).first.check()
    elif spec.kind == "date":
        scope.locator(f"[id='f-{name}']").fill("2026-01-15")
    elif spec.kind == "number":
        scope.locator(f"[id='f-{name}']").fill(str(int(spec.minimum or 1)))
    elif spec.kind in ("text", "long_text"):
        scope.locator(f"[id='f-{name}']").fill("Answer written by the test patient")


def fill_intake(page: Page, fields: tuple[Field, ...]) -> None:
    for spec in fields:
        if spec.show_if is not None:
            continue  # the chosen answers avoid the conditions that unfold these
        if isinstance(spec, Repeating):
            for _ in range(spec.min_items):
                page.get_by_role(
                    "button", name=re.compile(rf"^Add (a|another) {spec.item_label.lower()}")
                ).click()
                index = page.locator(f"fieldset[id='f-{spec.name}'] .repeat-item").count() - 1
                for sub in spec.fields:
                    if sub.required and sub.show_if is None:
                        answer(page, sub, prefix=f"{spec.name}.{index}.")
        elif spec.required:
            answer(page, spec)


@pytest.mark.parametrize("slug", BUILT_IN)
def test_patient_files_each_kind(
    live_server: LiveServer, page: Page, patient: str, slug: str
) -> None:
    specialty = PluginHost.load(live_server.settings).specialty(slug)
    assert specialty is not None
    for_child = slug == "pathology"
    sign_in(page, live_server, patient)
    page.get_by_role("link", name="Start a new request").click()
    page.get_by_label(exact(specialty.title)).check()
    page.get_by_role("button", name="Start my request").click()

    expect(page.get_by_role("heading", name="Who is the second opinion for?")).to_be_visible()
    if for_child:
        page.get_by_label("My child, or a person I am the guardian of or care for").check()
        page.get_by_label("Their full name").fill("Omar Malik")
        page.get_by_label("I am their parent").check()
        page.get_by_label(re.compile("I confirm that I am allowed to act")).check()
        page.get_by_label("Date of birth").fill("2016-09-12")
        page.get_by_label("Male", exact=True).check()
    else:
        page.get_by_label("Myself").check()
        page.get_by_label("Date of birth").fill("1984-02-20")
        page.get_by_label("Female", exact=True).check()
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Tell us about the case")).to_be_visible()
    results = Axe().run(page)
    serious = [
        v["id"] for v in results.response["violations"] if v["impact"] in {"serious", "critical"}
    ]
    assert serious == [], serious
    if slug == "radiology":
        screenshot(page, "radiology-intake-phone")
        page.set_viewport_size({"width": 1280, "height": 900})
        screenshot(page, "radiology-intake-desktop")
        page.set_viewport_size({"width": 390, "height": 844})
    fill_intake(page, specialty.intake.fields)
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Your questions for the doctor")).to_be_visible()
    page.get_by_label("Question 1").fill("Do you agree with the diagnosis?")
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Would you like a particular doctor?")).to_be_visible()
    page.get_by_label(re.compile("^No preference")).check()
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Check your request")).to_be_visible()
    expect(page.get_by_text("Some answers are still missing")).to_have_count(0)
    if for_child:
        expect(page.get_by_text("Omar Malik")).to_be_visible()
    page.get_by_role("button", name="Submit request").click()

    expect(page.get_by_role("status").first).to_contain_text("Your request is submitted")
    reference = page.get_by_role("heading", level=1).inner_text()
    assert re.search(r"SO-\d{4}-\d{5}", reference)
    page.goto(live_server.url + "/dashboard")
    expect(
        page.get_by_role("link", name=re.search(r"SO-\d{4}-\d{5}", reference).group(0))
    ).to_be_visible()

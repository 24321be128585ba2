"""The patient's request through HTTP: every field type, autosave, submit, ownership."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from httpx import AsyncClient

from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases.tables import Case, CaseEvent
from core.hookspecs import hookimpl
from core.specialty import (
    Choice,
    DateField,
    Form,
    LongText,
    MultiChoice,
    Number,
    Repeating,
    RequiredDocument,
    ScoredCategory,
    ShowIf,
    SingleChoice,
    Specialty,
    Text,
    YesNo,
)
from tests.conftest import open_client
from tests.support import make_person, post_form, sign_in

DERMATOLOGY = Specialty(
    slug="dermatology",
    title="Dermatology second opinion",
    summary="Choose this when a skin problem needs another look.",
    intake=Form(
        version=3,
        fields=(
            Text(name="diagnosis", label="Diagnosis you were given", required=True),
            LongText(name="history", label="History"),
            SingleChoice(
                name="site",
                label="Where on the body",
                required=True,
                choices=(Choice("face", "Face"), Choice("arm", "Arm"), Choice("leg", "Leg")),
            ),
            MultiChoice(
                name="symptoms",
                label="Symptoms",
                choices=(
                    Choice("itch", "Itching"),
                    Choice("pain", "Pain"),
                    Choice("bleed", "Bleeding"),
                ),
            ),
            DateField(name="noticed", label="When did you notice it?", required=True),
            Number(name="size", label="Size", unit="mm", minimum=0, maximum=300),
            YesNo(name="biopsy", label="Was a biopsy done?", required=True),
            Text(
                name="biopsy_result",
                label="Biopsy result",
                required=True,
                show_if=ShowIf("biopsy", ("yes",)),
            ),
            ScoredCategory(
                name="itch_score",
                label="How bad is the itch?",
                choices=tuple(Choice(str(i), str(i)) for i in range(0, 4)),
            ),
            Repeating(
                name="treatments",
                label="Treatments tried",
                item_label="Treatment",
                max_items=3,
                fields=(
                    Text(name="name", label="Treatment", required=True),
                    Number(name="weeks", label="How long", unit="weeks", minimum=0, maximum=520),
                ),
            ),
        ),
    ),
    required_documents=(RequiredDocument(key="photos", label="Photos of the skin"),),
)


class DermatologyPlugin:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [DERMATOLOGY]

    @hookimpl
    def consilium_validate_intake(self, specialty, values, subject_birth_date):
        if specialty.slug != "dermatology" or subject_birth_date is None:
            return None
        noticed = values.get("noticed")
        if noticed and noticed < subject_birth_date.isoformat():
            return {"noticed": "This date is before the date of birth."}
        return None


GOOD_INTAKE = {
    "diagnosis": "Eczema",
    "history": "Since last winter",
    "site": "arm",
    "symptoms": ["itch", "bleed"],
    "noticed": "2025-01-10",
    "size": "12",
    "biopsy": "no",
    "itch_score": "2",
    "treatments.0.name": "Hydrocortisone cream",
    "treatments.0.weeks": "6",
    "treatments.1.name": "",
    "treatments.1.weeks": "",
}


@pytest.fixture
def app(app):
    app.state.plugins.manager.register(DermatologyPlugin(), name="dermatology-test")
    return app


async def start(client: AsyncClient, slug: str = "dermatology") -> str:
    response = await post_form(client, "/requests/new", {"specialty": slug})
    assert response.status_code == 303, response.text
    return response.headers["location"].split("/")[2]


async def fill_all_steps(client: AsyncClient, uid: str, *, child: bool = False) -> None:
    subject = {"subject_kind": "self", "subject_birth_date": "1990-05-01", "subject_sex": "female"}
    if child:
        subject = {
            "subject_kind": "dependant",
            "subject_name": "Little Ali",
            "subject_birth_date": "2018-03-02",
            "subject_sex": "male",
            "subject_relationship": "parent",
            "guardian_declared": "yes",
        }
    steps = [
        ("subject", subject),
        ("intake", GOOD_INTAKE),
        ("questions", {"question_1": "Is it eczema?", "question_2": "What cream should I use?"}),
        ("doctor", {"preferred_doctor": "none"}),
    ]
    for step, data in steps:
        response = await post_form(client, f"/requests/{uid}/{step}", data)
        assert response.status_code == 303, (step, response.text[:2000])


async def test_patient_files_a_request_for_their_child(client: AsyncClient) -> None:
    patient = await make_person("patient", "parent@example.com")
    await sign_in(client, patient)
    assert "Dermatology second opinion" in (await client.get("/requests/new")).text
    uid = await start(client)
    await fill_all_steps(client, uid, child=True)
    review = await client.get(f"/requests/{uid}/review")
    assert review.status_code == 200
    for text in (
        "Little Ali",
        "Eczema",
        "Itching, Bleeding",
        "12 mm",
        "Hydrocortisone cream",
        "Is it eczema?",
    ):
        assert text in review.text, text
    submitted = await post_form(client, f"/requests/{uid}/submit")
    assert submitted.headers["location"] == f"/cases/{uid}?notice=request-submitted"

    case = await cases.get_case(uid)
    assert case.status == "submitted" and case.subject_kind == "dependant"
    assert case.subject_name == "Little Ali" and case.guardian_declared
    answers = cases.answers_of(case)
    assert answers.version == 3
    assert answers.values["treatments"] == [{"name": "Hydrocortisone cream", "weeks": 6}]
    assert answers.values["biopsy_result"] is None  # hidden by its show-if rule
    assert cases.questions_of(case) == ["Is it eczema?", "What cream should I use?"]
    assert case.reference.startswith("SO-") and len(case.reference) == len("SO-2026-00001")

    page = await client.get(f"/cases/{uid}")
    assert "Request submitted" in page.text and case.reference in page.text
    dashboard = await client.get("/dashboard")
    assert case.reference in dashboard.text and "Little Ali" in dashboard.text
    actions = [e.action for e in await CaseEvent.objects().where(CaseEvent.case == case.id)]
    assert actions == ["created", "submit"]
    assert await AuditEvent.exists().where(AuditEvent.action == "case.submit")

    # Submitted: the patient can no longer change it.
    late = await post_form(
        client, f"/requests/{uid}/intake", {**GOOD_INTAKE, "diagnosis": "Changed"}
    )
    assert late.headers["location"] == f"/cases/{uid}"
    assert cases.answers_of(await cases.get_case(uid)).values["diagnosis"] == "Eczema"


async def test_every_page_writes_dates_the_same_way(client: AsyncClient) -> None:
    """Issue 10, item 8: the review step said 2018-03-02 where every other page says 2 Mar 2018
    (one filter, `day`, in core/web.py)."""
    await sign_in(client, await make_person("patient", "dates@example.com"))
    uid = await start(client)
    await fill_all_steps(client, uid, child=True)
    review = (await client.get(f"/requests/{uid}/review")).text
    assert "<dd>2 Mar 2018</dd>" in review and "2018-03-02" not in review
    assert "10 Jan 2025" in review  # an intake date, written by the form's own display
    assert (await post_form(client, f"/requests/{uid}/submit")).status_code == 303
    page = (await client.get(f"/cases/{uid}")).text
    assert "born 2 Mar 2018" in page and "2018-03-02" not in page


def test_the_date_filter() -> None:
    from datetime import UTC, date, datetime
    from zoneinfo import ZoneInfo

    from core.web import format_date

    karachi = ZoneInfo("Asia/Karachi")
    assert format_date(date(2026, 11, 16), karachi) == "16 Nov 2026"
    assert format_date(date(2026, 11, 16), karachi, weekday=True) == "Mon 16 Nov 2026"
    assert format_date("2016-04-12", karachi) == "12 Apr 2016"
    assert format_date(datetime(2026, 11, 15, 20, 0, tzinfo=UTC), karachi) == "16 Nov 2026"
    assert format_date("not a date", karachi) == "not a date"
    assert format_date(None, karachi) == format_date("", karachi) == ""


async def test_bad_input_is_explained_and_kept(client: AsyncClient) -> None:
    await sign_in(client, await make_person("patient", "typo@example.com"))
    uid = await start(client)
    await post_form(
        client,
        f"/requests/{uid}/subject",
        {"subject_kind": "self", "subject_birth_date": "2000-01-01", "subject_sex": "male"},
    )
    bad = {
        **GOOD_INTAKE,
        "diagnosis": "",
        "size": "999",
        "noticed": "not a date",
        "biopsy": "yes",
        "biopsy_result": "",
        "treatments.0.weeks": "many",
        "history": "<b>scary</b>",
    }
    response = await post_form(client, f"/requests/{uid}/intake", bad)
    assert response.status_code == 400
    text = response.text
    assert "Answer “Diagnosis you were given”." in text
    assert "Enter 300 mm or less." in text
    assert "Enter a date like 2026-10-02." in text
    assert "Answer “Biopsy result”." in text  # required now that biopsy is yes
    assert 'id="f-treatments.0.weeks-error"' in text
    assert 'value="999"' in text and "&lt;b&gt;scary&lt;/b&gt;" in text
    assert "<b>scary</b>" not in text
    # Entries were kept even though they did not pass.
    draft = cases.draft_of(await cases.get_case(uid))
    assert draft["intake"]["size"] == ["999"]


async def test_dates_before_birth_are_refused_by_the_plugin_hook(client: AsyncClient) -> None:
    await sign_in(client, await make_person("patient", "young@example.com"))
    uid = await start(client)
    await post_form(
        client,
        f"/requests/{uid}/subject",
        {"subject_kind": "self", "subject_birth_date": "2025-06-01", "subject_sex": "male"},
    )
    response = await post_form(client, f"/requests/{uid}/intake", GOOD_INTAKE)
    assert response.status_code == 400 and "before the date of birth" in response.text


async def test_child_request_needs_the_guardian_declaration(client: AsyncClient) -> None:
    await sign_in(client, await make_person("patient", "guardian@example.com"))
    uid = await start(client)
    response = await post_form(
        client,
        f"/requests/{uid}/subject",
        {"subject_kind": "dependant", "subject_name": "Sara", "subject_birth_date": "2030-01-01"},
    )
    assert response.status_code == 400
    for message in (
        "Please confirm that you may act",
        "date of birth in the past",
        "how you are related",
    ):
        assert message in response.text
    assert 'value="Sara"' in response.text


async def test_repeating_rows_are_added_and_removed_without_javascript(client: AsyncClient) -> None:
    await sign_in(client, await make_person("patient", "rows@example.com"))
    uid = await start(client)
    page = await post_form(
        client, f"/requests/{uid}/intake", {**GOOD_INTAKE, "action": "add:treatments"}
    )
    assert page.status_code == 200
    assert 'name="treatments.2.name"' in page.text and "Treatment 3" in page.text
    page = await post_form(
        client, f"/requests/{uid}/intake", {**GOOD_INTAKE, "action": "remove:treatments:0"}
    )
    assert 'name="treatments.0.name"' not in page.text
    assert 'name="treatments.1.name"' in page.text


async def test_drafts_autosave_and_survive_a_closed_tab(client: AsyncClient, running_app) -> None:
    patient = await make_person("patient", "autosave@example.com")
    await sign_in(client, patient)
    uid = await start(client)
    saved = await client.post(
        f"/requests/{uid}/intake/autosave",
        data={"diagnosis": "Half typed", "size": "abc"},
        headers={"x-csrftoken": client.cookies.get("csrftoken") or "", "hx-request": "true"},
    )
    assert saved.status_code == 200 and "Saved" in saved.text and "<html" not in saved.text
    async with open_client(running_app) as new_tab:
        await sign_in(new_tab, patient)
        page = await new_tab.get(f"/requests/{uid}/intake")
        assert 'value="Half typed"' in page.text and 'value="abc"' in page.text


async def test_show_if_fields_unfold_when_their_condition_holds(client: AsyncClient) -> None:
    await sign_in(client, await make_person("patient", "showif@example.com"))
    uid = await start(client)
    folded = await client.get(f"/requests/{uid}/intake")
    assert '<details class="conditional" id="f-biopsy_result-cond">' in folded.text
    refreshed = await client.post(
        f"/requests/{uid}/intake/autosave?refresh=1",
        data={**GOOD_INTAKE, "biopsy": "yes"},
        headers={"x-csrftoken": client.cookies.get("csrftoken") or "", "hx-request": "true"},
    )
    assert refreshed.status_code == 200
    # Only the conditional fields come back (out of band), so nothing being typed is replaced.
    assert 'id="cond-biopsy_result" hx-swap-oob="true"' in refreshed.text
    assert "<html" not in refreshed.text and 'name="diagnosis"' not in refreshed.text
    assert 'id="f-biopsy_result"' in refreshed.text and "f-biopsy_result-cond" not in refreshed.text
    assert "Only if you answered “Yes” to “Was a biopsy done?”" in folded.text


async def test_incomplete_request_cannot_be_submitted(client: AsyncClient) -> None:
    await sign_in(client, await make_person("patient", "hasty@example.com"))
    uid = await start(client)
    response = await post_form(client, f"/requests/{uid}/submit")
    assert response.status_code == 400 and "Some answers are still missing" in response.text
    assert (await cases.get_case(uid)).status == "draft"


async def test_another_patient_cannot_see_edit_or_submit(client: AsyncClient, running_app) -> None:
    await sign_in(client, await make_person("patient", "owner@example.com"))
    uid = await start(client)
    await fill_all_steps(client, uid)
    async with open_client(running_app) as other:
        await sign_in(other, await make_person("patient", "snoop@example.com"))
        assert (await other.get(f"/cases/{uid}")).status_code == 404
        assert (await other.get(f"/requests/{uid}/intake")).status_code == 404
        assert (await post_form(other, f"/requests/{uid}/intake", GOOD_INTAKE)).status_code == 404
        assert (await post_form(other, f"/requests/{uid}/submit")).status_code == 404
        assert (
            await post_form(other, f"/requests/{uid}/cancel", {"confirm": "yes"})
        ).status_code == 404
        assert "Eczema" not in (await other.get("/dashboard")).text
    assert (await cases.get_case(uid)).status == "draft"
    denied = await AuditEvent.count().where(AuditEvent.action == "access.denied")
    assert denied >= 5


async def test_illegal_transitions_are_refused_with_a_reason(client: AsyncClient) -> None:
    patient = await make_person("patient", "rules@example.com")
    doctor = await make_person("doctor", "rules-doc@example.com")
    await sign_in(client, patient)
    uid = await start(client)
    case = await cases.get_case(uid)
    with pytest.raises(cases.TransitionRefused, match="Your account cannot do this"):
        await cases.transition(case, "offer", patient.user, ip=None)
    with pytest.raises(cases.TransitionRefused, match="not possible while the case is “Draft”"):
        await cases.transition(case, "receive", None, ip=None)
    with pytest.raises(cases.CaseNotFound):
        await cases.transition(case, "start_review", doctor.user, ip=None)
    await cases.transition(case, "cancel", patient.user, ip=None)
    assert (await cases.get_case(uid)).status == "cancelled"


async def test_references_are_unique_under_concurrency(settings) -> None:
    patient = await make_person("patient", "many@example.com")
    made = await asyncio.gather(
        *(cases.start_request(patient.user, DERMATOLOGY, ip=None) for _ in range(30))
    )
    references = {case.reference for case in made}
    assert len(references) == 30
    assert await Case.count() == 30


async def test_staff_cannot_start_requests(client: AsyncClient) -> None:
    await sign_in(client, await make_person("doctor", "nope-doc@example.com"))
    assert (await client.get("/requests/new")).status_code == 403


async def test_old_cases_still_read_correctly_after_the_form_changes(client, app) -> None:
    await sign_in(client, await make_person("patient", "old@example.com"))
    uid = await start(client)
    await fill_all_steps(client, uid)
    await post_form(client, f"/requests/{uid}/submit")

    # The plugin ships version 4: the "site" question is gone and "diagnosis" is relabelled.
    fields = tuple(
        Text(name="diagnosis", label="Current diagnosis", required=True)
        if f.name == "diagnosis"
        else f
        for f in DERMATOLOGY.intake.fields
        if f.name != "site"
    )
    newer = dataclasses.replace(DERMATOLOGY, intake=Form(version=4, fields=fields))

    class UpgradedPlugin:
        @hookimpl
        def consilium_specialties(self) -> list[Specialty]:
            return [newer]

    manager = app.state.plugins.manager
    manager.unregister(name="dermatology-test")
    manager.register(UpgradedPlugin(), name="dermatology-v4")
    assert app.state.plugins.specialty("dermatology").intake.version == 4

    answers = cases.answers_of(await cases.get_case(uid))
    assert answers.version == 3
    page = (await client.get(f"/cases/{uid}")).text
    assert "Where on the body" in page and "Arm" in page  # dropped field, old label, in words
    assert "Diagnosis you were given" in page and "Current diagnosis" not in page


async def test_free_text_is_escaped_on_every_case_page(client) -> None:
    xss = "<script>alert(1)</script>"
    await sign_in(client, await make_person("patient", "xss-case@example.com"))
    uid = await start(client)
    await fill_all_steps(client, uid, child=True)
    await post_form(
        client,
        f"/requests/{uid}/subject",
        {
            "subject_kind": "dependant",
            "subject_name": xss,
            "subject_birth_date": "2018-03-02",
            "subject_sex": "male",
            "subject_relationship": "parent",
            "guardian_declared": "yes",
        },
    )
    await post_form(client, f"/requests/{uid}/intake", {**GOOD_INTAKE, "diagnosis": xss})
    await post_form(client, f"/requests/{uid}/questions", {"question_1": xss})
    for path in (f"/requests/{uid}/review", f"/requests/{uid}/subject", f"/requests/{uid}/intake"):
        text = (await client.get(path)).text
        assert xss not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path
    await post_form(client, f"/requests/{uid}/submit")
    for path in (f"/cases/{uid}", "/dashboard"):
        text = (await client.get(path)).text
        assert xss not in text and "&lt;script&gt;" in text, path

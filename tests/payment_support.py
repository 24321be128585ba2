"""A small test specialty and helpers that take a patient's case to "submitted" over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

from httpx import AsyncClient

from core.cases import service as cases
from core.cases.tables import Case
from core.documents import service as documents
from core.hookspecs import hookimpl
from core.specialty import (
    AGREES,
    DIFFERS,
    ConcordanceGrade,
    Form,
    LongText,
    PhysicalMaterial,
    RequiredDocument,
    ShowIf,
    Specialty,
    Text,
    YesNo,
)
from tests.support import post_form

CHECKUP = Specialty(
    slug="checkup",
    title="Check-up second opinion",
    summary="A small specialty for payment tests.",
    intake=Form(version=1, fields=(Text(name="diagnosis", label="Diagnosis", required=True),)),
    required_documents=(
        RequiredDocument(key="letter", label="The doctor's letter"),
        RequiredDocument(key="photos", label="Photos", required=False),
    ),
    # Asked only of a case whose diagnosis is "Tumour" (tests/test_completeness.py).
    physical_materials=(
        PhysicalMaterial(
            key="slides",
            label="The glass slides",
            help="The lab sends them.",
            applies_when=(ShowIf("diagnosis", ("Tumour",)),),
        ),
        PhysicalMaterial(
            key="blocks",
            label="The tissue blocks",
            required=False,
            applies_when=(ShowIf("diagnosis", ("Tumour",)),),
        ),
    ),
    # A small review form for tests/test_review.py: a show-if field and a rule across fields.
    review=Form(
        version=1,
        fields=(
            LongText(name="opinion", label="Opinion", required=True),
            YesNo(name="operate", label="Is an operation needed?", required=True),
            Text(
                name="operation",
                label="Which operation",
                required=True,
                show_if=ShowIf("operate", ("yes",)),
            ),
        ),
    ),
    concordance=(
        ConcordanceGrade("same", "Same conclusion", level=AGREES),
        ConcordanceGrade("other", "Another conclusion", level=DIFFERS),
    ),
)


class CheckupPlugin:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [CHECKUP]

    @hookimpl
    def consilium_validate_review(self, values: dict) -> dict[str, str] | None:
        # "Another conclusion" with no operation: say which conclusion, in the opinion.
        if values.get("concordance") == "other" and "instead" not in (values.get("opinion") or ""):
            return {"opinion": "Say what you conclude instead."}
        return None


def with_checkup(app):
    app.state.plugins.manager.register(CheckupPlugin(), name="checkup-test")
    return app


async def submitted_case(client: AsyncClient, *, diagnosis: str = "Gallstones") -> Case:
    """Start, fill and submit a checkup request as the signed-in patient."""
    response = await post_form(client, "/requests/new", {"specialty": "checkup"})
    assert response.status_code == 303, response.text
    uid = response.headers["location"].split("/")[2]
    steps = [
        (
            "subject",
            {"subject_kind": "self", "subject_birth_date": "1980-01-02", "subject_sex": "male"},
        ),
        ("intake", {"diagnosis": diagnosis}),
        ("questions", {"question_1": "Do I need an operation?"}),
        ("doctor", {"preferred_doctor": "none"}),
    ]
    for step, data in steps:
        response = await post_form(client, f"/requests/{uid}/{step}", data)
        assert response.status_code == 303, (step, response.text[:1000])
    response = await post_form(client, f"/requests/{uid}/submit")
    assert response.status_code == 303, response.text[:1000]
    return await cases.get_case(uid)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def add_letter(
    app, case: Case, *, checklist_item: str | None = "letter", text: str = "letter"
) -> None:
    """The patient's required record, through the upload service the routes use (the same
    `text` twice is the same content, which a case stores once)."""
    patient_case = await cases.get_case(str(case.uid))
    await documents.store_upload(
        app.state.records,
        patient_case,
        filename="letter.pdf",
        chunks=_chunks(b"%PDF-1.7\n" + f"{text} ".encode() * 400),
        uploader=None,
        checklist_item=checklist_item,
        plugins=app.state.plugins,
        specialty=CHECKUP,
    )

"""Reports without a database: a ReportView for a specialty's review values, rendered to HTML
and PDF as the service does (for plugin report tests and for looking at the PDFs)."""

from __future__ import annotations

from typing import Any

from core.reports.render import (
    AGREEMENT_FOR_PATIENTS,
    MANAGEMENT_FOR_PATIENTS,
    ReportView,
    Signature,
    _texts,
    render_document,
    sections_of,
    terms_used,
)
from core.specialty import AGREES, Specialty


def view_for(specialty: Specialty, values: dict[str, Any], **overrides: Any) -> ReportView:
    agreement = overrides.pop("agreement", AGREES)
    view = ReportView(
        hospital_name="Consilium Hospital",
        hospital_address="1 Hospital Road, Lahore, Pakistan",
        hospital_contact="second-opinion@consilium.invalid · +92 42 0000 0000",
        specialty_slug=specialty.slug,
        specialty_title=specialty.title,
        number="R-7K3M-9QXD-2HPA",
        version=1,
        kind="report",
        case_reference="SO-2026-00042",
        patient_name="Amina Rahman",
        patient_birth_date="4 March 1961",
        patient_sex="Female",
        guardian="",
        materials=["Original report (PDF)", "Series 2: AX T2 (MR, 24 images)"],
        answers=[
            {
                "label": "Do you agree with the diagnosis?",
                "text": "Yes. The findings support the diagnosis your doctors made.",
            }
        ],
        agreement=agreement,
        agreement_words=AGREEMENT_FOR_PATIENTS[agreement],
        management_words=MANAGEMENT_FOR_PATIENTS["no"],
        summary=(
            "The specialist agrees with your first report.\n\nKeep to the plan your doctor made."
        ),
        limitations=["Based on the records only: the patient was not examined"],
        limitations_comment="",
        pending_tests="",
        sections=sections_of(specialty, values),
        values=values,
        colleagues=[],
        communications=[],
        signature=Signature(
            "Dr. Sara Ahmed", "Consultant", "PMDC-12345-P", "PMDC", "3 Dec 2026 14:05"
        ),
        issued_on="3 Dec 2026 14:05",
    )
    for key, value in overrides.items():
        setattr(view, key, value)
    view.terms = terms_used(specialty.glossary, _texts(view))
    return view


def html_of(view: ReportView, specialty: Specialty, plugins: Any) -> str:
    return render_document(view, specialty, plugins, verify_url="https://consilium.invalid/verify")

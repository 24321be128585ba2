"""The four built-in specialties' report templates (`report_template`) and glossaries: each
report reads in the order a hospital's would, shows every answered field, explains the terms it
uses (and only those), escapes what the doctor typed, and prints to a PDF that names the patient
on every page.

No database: a ReportView is built from review values (tests/report_support.py) and rendered as
the service renders it. `SAMPLES` are realistic signed reviews, also used to look at the PDFs:
`PYTHONPATH=. .venv/bin/python -c 'from tests.test_report_templates import write_pdfs;
write_pdfs()'` writes /tmp/<slug>.pdf.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from pypdf import PdfReader

import plugins.general
import plugins.pathology
import plugins.radiology
import plugins.surgical
from core.forms import Form, LongText, MappingFormData, Text
from core.pdf import html_to_pdf
from core.plugins import PluginHost
from core.reports.render import ReportView
from core.specialty import DIFFERS, DIFFERS_IN_DETAIL, Specialty
from tests.conftest import make_settings
from tests.report_support import html_of, view_for

SPECIALTIES: dict[str, Specialty] = {
    "radiology": plugins.radiology.SPECIALTY,
    "pathology": plugins.pathology.SPECIALTY,
    "surgical": plugins.surgical.SPECIALTY,
    "general": plugins.general.SPECIALTY,
}

# Review forms as a doctor submits them (name → text; a multi-choice takes a list).
SAMPLES: dict[str, dict[str, Any]] = {
    "radiology": {
        "study_quality": "limited",
        "quality_comment": (
            "Mild motion artefact on the left MLO view. The posterior tissue of the left breast "
            "is not fully included on the CC view; the ultrasound covers the area."
        ),
        "comparison": "Bilateral mammogram of 14 Feb 2025, City Hospital, Lahore.",
        "findings": (
            "Mammogram: the breasts are heterogeneously dense (ACR category C), which may "
            "obscure small masses.\n"
            "Left breast: an irregular mass with spiculated margins at 2 o'clock, middle depth, "
            "with associated fine pleomorphic calcifications extending 8 mm anteriorly. It was "
            "not present on the mammogram of 14 Feb 2025.\n"
            "Right breast: scattered benign-appearing calcifications, stable.\n\n"
            "Ultrasound of the left breast and axilla: at 2 o'clock, 4 cm from the nipple, an "
            "irregular hypoechoic mass, not parallel to the skin, with an angular margin and "
            "posterior acoustic shadowing, corresponding to the mammographic finding.\n"
            "One left axillary lymph node has an eccentric cortex of 4 mm with a preserved "
            "fatty hilum. The other axillary nodes are normal."
        ),
        "lesions.0.location": "Left breast, 2 o'clock, 4 cm from the nipple",
        "lesions.0.size_mm": "14",
        "lesions.0.characterisation": "Irregular, spiculated, hypoechoic; posterior shadowing",
        "lesions.0.series_image": "US image 12",
        "lesions.1.location": "Left axilla, level I",
        "lesions.1.size_mm": "9",
        "lesions.1.characterisation": "Lymph node, eccentric cortical thickening 4 mm",
        "breast_imaging": "yes",
        "birads": "4C",
        "impression": (
            "14 mm irregular spiculated mass in the left breast at 2 o'clock with associated "
            "calcifications, new since February 2025: highly suspicious for malignancy.\n\n"
            "Borderline left axillary lymph node (eccentric cortex 4 mm)."
        ),
        "recommendation": (
            "Ultrasound-guided core needle biopsy of the left breast mass, and of the left "
            "axillary lymph node at the same visit, within 2 weeks. Clip placement at biopsy.\n\n"
            "Referral to the breast multidisciplinary team once the histology is available."
        ),
        "discrepancy_comment": (
            "The original report describes the left breast mass as a probably benign "
            "fibroadenoma (BI-RADS 3) with a 6-month follow-up. The spiculated margin, the "
            "associated calcifications and the interval change make it BI-RADS 4C: a biopsy is "
            "recommended now rather than follow-up."
        ),
    },
    "pathology": {
        "material_reviewed": ["slides", "recuts", "new_tests"],
        "specimen_adequacy": "adequate",
        "diagnosis": (
            "Left breast, 10 o'clock, core biopsy and wide local excision: invasive carcinoma "
            "of no special type (NST), Nottingham grade 2 (tubules 3, nuclei 2, mitoses 1), "
            "18 mm, with ductal carcinoma in situ of intermediate nuclear grade.\n\n"
            "Left axillary sentinel lymph node: metastatic carcinoma in 1 of 2 lymph nodes "
            "(macrometastasis, 4 mm, no extranodal extension)."
        ),
        "findings.0.specimen_label": "A: left breast 10 o'clock, core biopsy",
        "findings.0.diagnosis": "Invasive carcinoma NST",
        "findings.0.grade": "Nottingham grade 2 (3+2+1)",
        "findings.0.margin_status": "not_applicable",
        "findings.1.specimen_label": "B: left breast, wide local excision",
        "findings.1.diagnosis": "Invasive carcinoma NST, 18 mm, with intermediate-grade DCIS",
        "findings.1.grade": "Nottingham grade 2 (3+2+1)",
        "findings.1.margin_status": "close",
        "findings.1.closest_margin_mm": "1.5",
        "findings.2.specimen_label": "C: left axillary sentinel lymph nodes",
        "findings.2.diagnosis": "Metastatic carcinoma in 1 of 2 nodes (4 mm)",
        "findings.2.margin_status": "not_applicable",
        "grade_stage": "pT1c pN1a (sn) (AJCC 8th edition)",
        "additional_tests": (
            "Immunohistochemistry on block B2: ER positive (Allred 8/8), PR positive (Allred "
            "6/8), HER2 equivocal (2+): HER2 FISH on the same block is recommended. Ki-67 "
            "about 20%."
        ),
        "discordance_comment": (
            "The original report gives Nottingham grade 3. On review of the original slides "
            "and recuts, nuclear pleomorphism is moderate (score 2) and the mitotic count is "
            "low (score 1): grade 2. The close anterior margin (1.5 mm) was not reported. "
            "Neither difference changes the need for surgery; the margin may need discussion "
            "at the multidisciplinary meeting."
        ),
    },
    "surgical": {
        "case_summary": (
            "52-year-old woman with three episodes of biliary colic in 6 months, the last "
            "needing admission for pain relief. Ultrasound: multiple gallstones, a normal "
            "gallbladder wall and a common bile duct of 5 mm. Liver tests normal. Treated "
            "hypertension; BMI 31. Proposed: laparoscopic cholecystectomy as a day case."
        ),
        "surgery_indicated": "yes",
        "indication_reasoning": (
            "Recurrent biliary colic with gallstones on ultrasound is a clear indication for "
            "cholecystectomy: further attacks are likely, and so are complications such as "
            "cholecystitis, gallstone pancreatitis or stones in the bile duct.\n\n"
            "Current guidelines recommend the operation for symptomatic gallstones."
        ),
        "discordance_comment": (
            "Agree with the operation. Suggest a pre-operative MRCP is not needed given the "
            "normal bile duct and liver tests."
        ),
        "recommended_approach": (
            "Laparoscopic cholecystectomy, day case, by a surgeon who does it routinely. "
            "Conversion to open surgery is needed in fewer than 5 in 100 operations."
        ),
        "timing": "as_planned",
        "nonsurgical_alternatives": (
            "Watchful waiting with a low-fat diet and pain relief for attacks. About half of "
            "people with biliary colic have another attack within 2 years, and some develop "
            "complications that make the operation harder."
        ),
        "risks": (
            "Bleeding and wound infection (1 to 2 in 100). Bile leak (about 1 in 100). Bile "
            "duct injury (about 3 in 1,000), which may need a further operation.\n"
            "Patient-specific: obesity slightly raises the risk of wound problems and of a "
            "deep vein thrombosis; an ASA class of II."
        ),
        "preop_workup": (
            "Blood pressure check and ECG at the pre-operative assessment. Stop the daily "
            "aspirin 7 days before, if the GP agrees."
        ),
    },
    "general": {
        "case_summary": (
            "58-year-old man with type 2 diabetes diagnosed 2 years ago (HbA1c 7.4% and 7.9%), "
            "treated hypertension and a raised urine albumin:creatinine ratio (ACR 45 mg/mmol "
            "on two samples). eGFR 58. Referred diagnosis: type 2 diabetes."
        ),
        "diagnosis_status": "modified",
        "diagnostic_assessment": (
            "The records support type 2 diabetes. The raised albuminuria on two samples with an "
            "eGFR of 58 means there is also chronic kidney disease, stage G3a A2, most likely "
            "from diabetes. Other causes are unlikely with a normal urine dipstick for blood.\n\n"
            "This was not stated in the referral letter."
        ),
        "further_tests": (
            "Repeat urine ACR and eGFR in 3 months.\n"
            "Kidney ultrasound only if the eGFR falls further or blood appears in the urine."
        ),
        "recommended_treatment": (
            "Continue metformin 1 g twice daily (safe at this kidney function; review the dose "
            "if the eGFR falls below 45).\n\n"
            "Add an SGLT2 inhibitor (for example empagliflozin 10 mg daily): first-line "
            "for diabetes with kidney disease, it protects the kidneys and the heart.\n\n"
            "Switch amlodipine to ramipril to protect the kidneys, with a blood test for "
            "potassium and kidney function 2 weeks after starting.\n\n"
            "A clinical trial of kidney protection in diabetes is recruiting at this hospital; "
            "ask your doctor whether you qualify."
        ),
        "follow_up_urgency": "soon",
        "discordance_comment": (
            "The treating team's plan (metformin and diet) does not address the kidney disease. "
            "The changes above are recommended."
        ),
    },
}

# The specialty's part of each sample, heading by heading, in order.
HEADINGS: dict[str, list[str]] = {
    "radiology": [
        "Comparison with the original report",
        "Technique",
        "Findings",
        "Impression",
        "Recommendation",
    ],
    "pathology": ["Diagnosis", "Details of the diagnosis", "Material and adequacy", "Comments"],
    "surgical": [
        "Is the operation needed?",
        "Recommended operation and approach",
        "Risks to discuss with the patient",
        "Non-surgical alternatives",
        "Recommended timing",
        "Recommended pre-operative work-up",
        "Summary of the case",
    ],
    "general": [
        "The diagnosis",
        "Recommended management",
        "Recommended further investigations",
        "Urgency of follow-up with the treating team",
        "Differences from the original opinion",
        "Summary of the case",
    ],
}

# Per specialty: a glossary term the sample uses, and one it does not.
USED_AND_UNUSED: dict[str, tuple[str, str]] = {
    "radiology": ("Spiculated", "Cyst"),
    "pathology": ("Margin", "Dysplasia"),
    "surgical": ("Laparoscopic", "Robotic"),
    "general": ("Clinical trial", "Prognosis"),
}

# A long text field of each form, for the escaping test.
FREE_TEXT = {
    "radiology": "impression",
    "pathology": "diagnosis",
    "surgical": "risks",
    "general": "diagnostic_assessment",
}

SCRIPT = '<script>alert("x")</script> & <b>bold</b>'


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> PluginHost:
    return PluginHost.load(make_settings(tmp_path_factory.mktemp("plugins"), None))


def values_of(specialty: Specialty, data: dict[str, Any]) -> dict[str, Any]:
    data = {name: value for name, value in data.items() if value is not None}
    values, errors = specialty.review.validate(MappingFormData(data))
    assert errors == {}
    return values


def view_of(slug: str, **changes: Any) -> ReportView:
    specialty = SPECIALTIES[slug]
    agreement = DIFFERS if slug == "radiology" else DIFFERS_IN_DETAIL
    values = values_of(specialty, {**SAMPLES[slug], **changes})
    return view_for(specialty, values, agreement=agreement)


def opinion(html: str) -> str:
    """The specialty's part: "The specialist's opinion", up to core's next section."""
    start = html.index('<h2 id="opinion-title">')
    return html[start : html.index('<h2 id="materials-title">', start)]


def headings(part: str) -> list[str]:
    return [re.sub(r"\s+", " ", h).strip() for h in re.findall(r"<h3>(.*?)</h3>", part, re.S)]


def shown(text: str) -> list[str]:
    """`text` as the report shows it: each line of each paragraph, escaped."""
    return [str(escape(row.strip())) for row in text.splitlines() if row.strip()]


# --- declarations -----------------------------------------------------------------------------


@pytest.mark.parametrize("slug", SPECIALTIES)
def test_each_specialty_has_its_report_template_and_a_glossary(slug: str) -> None:
    specialty = SPECIALTIES[slug]
    assert specialty.report_template == f"{slug}/report.html"
    folder = Path(plugins.radiology.__file__).parents[1] / slug / "templates"
    assert (folder / specialty.report_template).is_file()
    assert 8 <= len(specialty.glossary) <= 20
    terms = [t.term.lower() for t in specialty.glossary]
    assert len(set(terms)) == len(terms)
    for term in specialty.glossary:
        sentences = re.findall(r"[.!?](?:\s|$)", term.explanation)
        assert 1 <= len(sentences) <= 2, term.term
        assert len(term.explanation) <= 220, term.term


# --- what each report shows, in which order ----------------------------------------------------


@pytest.mark.parametrize("slug", SPECIALTIES)
def test_the_report_reads_in_the_hospitals_order(slug: str, host: PluginHost) -> None:
    part = opinion(html_of(view_of(slug), SPECIALTIES[slug], host))
    assert headings(part) == HEADINGS[slug]


@pytest.mark.parametrize("slug", SPECIALTIES)
def test_every_answered_field_is_in_the_report(slug: str, host: PluginHost) -> None:
    view = view_of(slug)
    part = opinion(html_of(view, SPECIALTIES[slug], host))
    answered = [line for section in view.sections for line in section.lines]
    assert {line.name for line in answered} == {
        name.split(".")[0] for name in SAMPLES[slug]
    }  # the sample answers every field it names (the view drops nothing)
    for line in answered:
        if not line.entries:
            assert str(escape(line.label)) in part, line.name
        for entry in line.entries or ((line,),):
            for x in entry:
                for row in shown(x.text):
                    assert row in part, (line.name, x.name, row)


def test_radiology_comparison_impression_and_category(host: PluginHost) -> None:
    part = opinion(html_of(view_of("radiology"), SPECIALTIES["radiology"], host))
    assert "Differs in a way that changes care" in part
    category = "BI-RADS assessment category: <strong>4C – High suspicion for malignancy"
    assert category in part
    assert part.index("Borderline left axillary") < part.index(category) < part.index("Clip")
    # The lesions as a table: a header per answered lesion field, a row per lesion.
    table = part[part.index("<table") : part.index("</table>")]
    assert '<th scope="col">Size (longest axis)</th>' in table
    assert table.count('<th scope="row">') == 2
    assert "<td>14 mm</td>" in table and "<td>—</td>" in table  # no series for lesion 2
    # Not breast imaging: no category; agreement in the radiologist's words.
    view = view_of("radiology", breast_imaging="no", birads=None)
    view.agreement = "agrees"
    part = opinion(html_of(view, SPECIALTIES["radiology"], host))
    assert "BI-RADS assessment category" not in part
    assert "<strong>Agrees</strong>" in part
    assert "Breast imaging?" in part  # answered, so shown


def test_pathology_diagnosis_comes_first_and_a_limited_specimen_qualifies_it(
    host: PluginHost,
) -> None:
    part = opinion(html_of(view_of("pathology"), SPECIALTIES["pathology"], host))
    block = part[part.index('<div class="pathology-diagnosis">') :]
    block = block[: block.index("</div>")]
    assert "<strong>Left breast, 10 o&#39;clock, core biopsy and wide local excision" in block
    assert part.index("invasive carcinoma of no special type") < part.index("Nottingham grade 2")
    specimen = '<th colspan="2" scope="rowgroup">Specimen B: left breast, wide local excision</th>'
    assert specimen in part
    assert '<tr><th scope="row">Closest margin</th><td>1.5 mm</td></tr>' in part
    assert "Specimen adequacy" not in block  # adequate: shown with the material, not here
    limited = view_of(
        "pathology", specimen_adequacy="limited", adequacy_comment="Scant tumour in the cores."
    )
    part = opinion(html_of(limited, SPECIALTIES["pathology"], host))
    block = part[part.index('<div class="pathology-diagnosis">') :]
    block = block[: block.index("</div>")]
    assert "Limited – diagnosis qualified" in block and "Scant tumour in the cores." in block
    assert part.count("Limited – diagnosis qualified") == 1
    assert headings(part)[0] == "Diagnosis"


def test_surgical_report_when_the_operation_is_not_indicated(host: PluginHost) -> None:
    view = view_of(
        "surgical",
        surgery_indicated="uncertain",
        information_needed="An MRCP to look for stones in the bile duct.",
    )
    part = opinion(html_of(view, SPECIALTIES["surgical"], host))
    assert "Recommended operation and approach" not in part  # not asked when uncertain
    assert "Is surgery indicated? <strong>Uncertain – more information needed</strong>" in part
    assert part.index("An MRCP") < part.index("Risks to discuss with the patient")


def test_general_report_without_a_diagnosis_status(host: PluginHost) -> None:
    part = opinion(html_of(view_of("general", diagnosis_status=None), SPECIALTIES["general"], host))
    assert headings(part)[0] == "The diagnosis"
    assert "The diagnosis made by the treating doctors" not in part
    assert "Assessment of the diagnosis" in part


@pytest.mark.parametrize("slug", SPECIALTIES)
def test_an_answered_field_the_template_does_not_know_is_still_shown(
    slug: str, host: PluginHost
) -> None:
    """A field added to the form later (or one no section names) comes after the template's
    own parts, under its section's title: nothing signed is left out."""
    base = SPECIALTIES[slug]
    extra = (
        LongText(name="addendum_note", label="Note for the treating team"),
        Text(name="second_reader", label="Second reader"),
    )
    specialty = dataclasses.replace(
        base, review=Form(version=base.review.version, fields=base.review.fields + extra)
    )
    values = values_of(
        specialty,
        {**SAMPLES[slug], "addendum_note": "Please call me.", "second_reader": "Dr Iqbal"},
    )
    part = opinion(html_of(view_for(specialty, values), specialty, host))
    assert headings(part)[: len(HEADINGS[slug])] == HEADINGS[slug]
    assert headings(part)[len(HEADINGS[slug]) :] == ["Other findings"]
    for text in ("Note for the treating team", "Please call me.", "Second reader", "Dr Iqbal"):
        assert text in part


# --- glossary and escaping ---------------------------------------------------------------------


@pytest.mark.parametrize("slug", SPECIALTIES)
def test_terms_the_report_uses_are_explained_and_no_others(slug: str, host: PluginHost) -> None:
    specialty = SPECIALTIES[slug]
    html = html_of(view_of(slug), specialty, host)
    words = html[html.index('<h2 id="terms-title">') :]
    used, unused = USED_AND_UNUSED[slug]
    [term] = [t for t in specialty.glossary if t.term == used]
    assert f"<dt>{escape(term.term)}</dt><dd>{escape(term.explanation)}</dd>" in words
    [other] = [t for t in specialty.glossary if t.term == unused]
    assert str(escape(other.explanation)) not in html
    assert f"<dt>{other.term}</dt>" not in words


@pytest.mark.parametrize("slug", SPECIALTIES)
def test_what_the_doctor_typed_is_escaped(slug: str, host: PluginHost) -> None:
    field = FREE_TEXT[slug]
    view = view_of(slug, **{field: f"{SAMPLES[slug][field]}\n\n{SCRIPT}"})
    html = html_of(view, SPECIALTIES[slug], host)
    assert "<script" not in html and "<b>bold</b>" not in html
    assert str(escape(SCRIPT)) in opinion(html)


# --- the PDF -----------------------------------------------------------------------------------


def test_every_pdf_page_is_numbered_and_names_the_patient(host: PluginHost) -> None:
    for slug, specialty in SPECIALTIES.items():
        pdf = PdfReader(io.BytesIO(html_to_pdf(html_of(view_of(slug), specialty, host))))
        pages = [page.extract_text() for page in pdf.pages]
        assert len(pages) >= 2, slug  # long enough to test the running footer
        for number, text in enumerate(pages, start=1):
            assert f"Page {number} of {len(pages)}" in text, (slug, number)
            assert "Amina Rahman" in text, (slug, number)
        assert "The specialist's opinion" in "".join(pages)
        assert HEADINGS[slug][-1] in re.sub(r"\s+", " ", "".join(pages)), slug


def write_pdfs(folder: str = "/tmp") -> None:
    """The samples as PDFs, to look at: /tmp/<slug>.pdf."""
    host = PluginHost.load(make_settings(Path(tempfile.mkdtemp()), None))
    for slug, specialty in SPECIALTIES.items():
        html = html_of(view_of(slug), specialty, host)
        Path(folder, f"{slug}.pdf").write_bytes(html_to_pdf(html))
        Path(folder, f"{slug}.html").write_text(html)

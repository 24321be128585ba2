"""The four built-in specialties: form declarations, field rules, show-if, repeating groups,
core's date-of-birth rules (`not_before_birth`), cross-field rules through
`consilium_validate_intake` (called only for the plugin that owns the specialty), and the intake
intro templates.

Plain synchronous tests: no database, no app.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

import plugins.general
import plugins.pathology
import plugins.radiology
import plugins.surgical
from core.forms import DateField, Form, MappingFormData, Repeating, Year
from core.hookspecs import hookimpl
from core.plugins import PluginHost
from core.specialty import DocumentKind, Specialty
from tests.conftest import make_settings

TODAY = date.today()
LAST_YEAR = TODAY - timedelta(days=365)
TWO_YEARS_AGO = TODAY - timedelta(days=730)
BORN = date(1980, 5, 1)

MODULES: dict[str, ModuleType] = {
    "general": plugins.general,
    "surgical": plugins.surgical,
    "pathology": plugins.pathology,
    "radiology": plugins.radiology,
}

INTAKE_OK: dict[str, dict[str, Any]] = {
    "general": {
        "diagnosis": "Type 2 diabetes",
        "diagnosis_date": LAST_YEAR.isoformat(),
        "tests_done": "HbA1c blood test, twice",
        "diagnosed_by": "Dr Ana Silva, family doctor",
        "diagnosed_at": "Riverside Clinic, Porto",
        "treatment_plan": "Metformin and a diet plan",
        "takes_medicines": "yes",
        "medications.0.name": "Metformin",
        "medications.0.dose": "500 mg",
        "medications.0.frequency": "twice a day",
        "has_allergies": "no",
        "goal": "both",
    },
    "surgical": {
        "procedure": "Laparoscopic cholecystectomy",
        "surgeon": "Mr J Okafor",
        "hospital": "St Mary's Hospital, Leeds",
        "indication": "Gallstones with repeated attacks of pain",
        "urgency": "elective",
        "proposed_date": (TODAY + timedelta(days=30)).isoformat(),
        "alternatives": ["watchful_waiting", "medicines"],
        "comorbidities": ["hypertension"],
        "anaesthesia_problems": "no",
        "had_surgery": "yes",
        "prior_surgeries.0.operation": "Appendix removed",
        "prior_surgeries.0.year": "2010",
        "prior_surgeries.0.hospital": "General Hospital",
    },
    "pathology": {
        "report_kind": "biopsy",
        "specimen_type": "core_needle",
        "specimen_site": "Left breast",
        "collection_date": LAST_YEAR.isoformat(),
        "lab_name": "Central Pathology Laboratory",
        "original_result": "Invasive ductal carcinoma, Nottingham grade 2",
        "tests_done": ["he", "ihc"],
        "material_available": "yes",
        "diagnostic_question": "Is the grade right?",
    },
    "radiology": {
        "modality": "ct",
        "body_part": "chest",
        "study_date": LAST_YEAR.isoformat(),
        "facility": "City Hospital",
        "contrast": "yes",
        "original_impression": "8 mm solid nodule in the right upper lobe.",
        "clinical_question": "Cough for 2 months; nodule seen on an earlier CT.",
        "has_prior_studies": "yes",
        "prior_studies.0.modality": "ct",
        "prior_studies.0.study_date": TWO_YEARS_AGO.isoformat(),
        "prior_studies.0.body_part": "chest",
    },
}

REVIEW_OK: dict[str, dict[str, Any]] = {
    "general": {
        "case_summary": "58-year-old with HbA1c 7.4% on two occasions.",
        "diagnostic_assessment": "Diagnosis of type 2 diabetes is supported.",
        "recommended_treatment": "Continue metformin; add lifestyle programme.",
        "answers": "Insulin is not needed at present.",
        "follow_up_urgency": "routine",
    },
    "surgical": {
        "case_summary": "Symptomatic cholelithiasis, three episodes of biliary colic.",
        "surgery_indicated": "yes",
        "indication_reasoning": "Recurrent biliary colic with gallstones on ultrasound.",
        "recommended_approach": "Laparoscopic cholecystectomy.",
        "timing": "as_planned",
        "risks": "Bile duct injury (0.3%), bile leak, conversion to open.",
    },
    "pathology": {
        "material_reviewed": ["slides"],
        "specimen_adequacy": "adequate",
        "diagnosis": "Invasive carcinoma of no special type, grade 2.",
        "findings.0.specimen_label": "A: left breast core",
        "findings.0.diagnosis": "Invasive carcinoma NST",
        "findings.0.grade": "Nottingham 2 (3+2+1)",
        "findings.0.margin_status": "not_applicable",
    },
    "radiology": {
        "study_quality": "diagnostic",
        "findings": "8 mm solid nodule, right upper lobe, unchanged from prior.",
        "lesions.0.location": "Right upper lobe",
        "lesions.0.size_mm": "8",
        "lesions.0.characterisation": "Solid, smooth margins",
        "breast_imaging": "no",
        "impression": "Stable 8 mm nodule over 12 months.",
        "recommendation": "CT at 18–24 months per Fleischner guidance.",
    },
}


def specialty(slug: str) -> Specialty:
    return MODULES[slug].SPECIALTY


def validate(form: Form, data: dict[str, Any], **changes: Any) -> tuple[dict, dict]:
    raw = {**data, **changes}
    return form.validate(MappingFormData({k: v for k, v in raw.items() if v is not None}))


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> PluginHost:
    return PluginHost.load(make_settings(tmp_path_factory.mktemp("plugins"), None))


def cross(host: PluginHost, slug: str, data: dict[str, Any], born: date | None = BORN, **kw):
    """Field checks first (they must pass), then core's date-of-birth rules and the plugin's
    cross-field rules, through the host as core calls them."""
    values, errors = validate(specialty(slug).intake, data, **kw)
    assert errors == {}
    return host.validate_intake(specialty(slug), values, born)


# --- declarations -----------------------------------------------------------------------------


@pytest.mark.parametrize("slug", MODULES)
def test_declaration_is_valid(slug: str) -> None:
    spec = specialty(slug)
    assert spec.slug == slug
    dataclasses.replace(spec)  # re-runs Specialty's own checks
    for form in (spec.intake, spec.review):
        Form(version=form.version, fields=form.fields)  # re-runs check_fields
        assert form.version >= 1 and form.fields
    assert spec.for_children and spec.audience.startswith("Adults and children")
    assert len(spec.concordance) >= 3
    assert spec.required_documents and any(d.required for d in spec.required_documents)
    keys = [d.key for d in spec.required_documents]
    assert len(keys) == len(set(keys))
    for document in spec.required_documents:
        assert set(document.kinds) <= set(spec.accepted_kinds)
        assert document.label and document.help
    covered = {name for section in spec.report_sections for name in section.fields}
    assert covered == {f.name for f in spec.review.fields} - {"breast_imaging"}


def test_plugins_use_only_the_public_api() -> None:
    for slug in MODULES:
        for path in (Path(__file__).parents[1] / "plugins" / slug).glob("*.py"):
            imports = [
                line.split()[1]
                for line in path.read_text().splitlines()
                if line.startswith(("from core", "import core"))
            ]
            assert set(imports) <= {"core.hookspecs", "core.specialty"}, path


@pytest.mark.parametrize("slug", MODULES)
def test_valid_answers_pass(slug: str) -> None:
    _, errors = validate(specialty(slug).intake, INTAKE_OK[slug])
    assert errors == {}
    _, errors = validate(specialty(slug).review, REVIEW_OK[slug])
    assert errors == {}


@pytest.mark.parametrize("slug", MODULES)
@pytest.mark.parametrize("form_name", ["intake", "review"])
def test_missing_required_fields_each_get_an_error(slug: str, form_name: str) -> None:
    form = getattr(specialty(slug), form_name)
    _, errors = form.validate(MappingFormData({}))
    expected = {f.name for f in form.fields if f.required and not f.show_if}
    assert set(errors) == expected
    for name in expected:
        label = form.field(name).label
        assert label in errors[name] and errors[name].startswith(("Answer", "Choose"))


# --- general ----------------------------------------------------------------------------------


def test_general_dates() -> None:
    form = specialty("general").intake
    future = (TODAY + timedelta(days=1)).isoformat()
    _, errors = validate(form, INTAKE_OK["general"], diagnosis_date=future)
    assert errors == {"diagnosis_date": "This date cannot be in the future."}
    _, errors = validate(form, INTAKE_OK["general"], diagnosis_date="03/04/2024")
    assert errors == {"diagnosis_date": "Enter a date like 2026-10-02."}


def test_general_show_if() -> None:
    form = specialty("general").intake
    data = INTAKE_OK["general"]
    values, errors = validate(form, data, has_allergies="no", allergy_details="penicillin")
    assert errors == {} and values["allergy_details"] is None
    _, errors = validate(form, data, has_allergies="yes")
    assert errors == {"allergy_details": "Answer “What are you allergic to, and what happens?”."}
    values, errors = validate(form, data, has_allergies="yes", allergy_details="Penicillin: rash")
    assert errors == {} and values["allergy_details"] == "Penicillin: rash"

    values, errors = validate(form, data, goal="both", goal_other="ignored")
    assert errors == {} and values["goal_other"] is None
    _, errors = validate(form, data, goal="other")
    assert set(errors) == {"goal_other"}


def test_general_medications_group() -> None:
    form = specialty("general").intake
    data = {k: v for k, v in INTAKE_OK["general"].items() if not k.startswith("medications.")}
    rows = {
        "medications.0.name": "Metformin",
        "medications.0.dose": "500 mg",
        "medications.1.name": "",  # a blank row the person added and left empty
        "medications.1.dose": "",
        "medications.2.dose": "10 mg",  # no name
        "medications.3.name": "Atorvastatin",
        "medications.3.frequency": "at night",
    }
    values, errors = validate(form, {**data, **rows})
    assert [m["name"] for m in values["medications"]] == ["Metformin", None, "Atorvastatin"]
    assert errors == {"medications.2.name": "Answer “Name of the medicine”."}  # as submitted

    _, errors = validate(form, data)  # said yes, listed none
    assert errors == {"medications": "Add at least 1 medicine."}
    values, errors = validate(form, {**data, **rows}, takes_medicines="no")
    assert errors == {} and values["medications"] == []


def born_text(day: date) -> str:
    return day.strftime("%-d %b %Y")


def test_general_cross_field_rules(host: PluginHost) -> None:
    data = INTAKE_OK["general"]
    assert cross(host, "general", data) == {}
    assert cross(host, "general", data, born=None) == {}
    born = LAST_YEAR + timedelta(days=1)
    errors = cross(host, "general", data, born=born)
    assert errors == {
        "diagnosis_date": f"This date is before the patient was born ({born_text(born)}). "
        "Check the date."
    }
    assert cross(host, "general", data, born=LAST_YEAR) == {}  # diagnosed at birth


# --- surgical ---------------------------------------------------------------------------------


def test_surgical_field_rules() -> None:
    form = specialty("surgical").intake
    data = INTAKE_OK["surgical"]
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    _, errors = validate(form, data, proposed_date=yesterday)
    assert errors == {"proposed_date": "This date cannot be in the past."}
    values, errors = validate(form, data, proposed_date=TODAY.isoformat())
    assert errors == {} and values["proposed_date"] == TODAY.isoformat()
    values, errors = validate(form, data, proposed_date=None)
    assert errors == {} and values["proposed_date"] is None

    _, errors = validate(form, data, urgency="emergency")
    assert errors == {"urgency": "Choose one of the options."}
    assert "emergency department" in form.field("urgency").help

    # ASA VI (brain-dead organ donor) never applies to someone asking for a second opinion.
    assert [c.value for c in form.field("asa_class").choices] == ["1", "2", "3", "4", "5"]
    _, errors = validate(form, data, asa_class="6")
    assert errors == {"asa_class": "Choose one of the options."}
    values, errors = validate(form, data, asa_class="3")
    assert errors == {} and values["asa_class"] == "3"

    _, errors = validate(form, data, **{"prior_surgeries.0.year": "1899"})
    assert errors == {"prior_surgeries.0.year": "Enter 1900 or more."}
    next_year = str(TODAY.year + 1)
    _, errors = validate(form, data, **{"prior_surgeries.0.year": next_year})
    assert errors == {
        "prior_surgeries.0.year": f"This year is in the future. Enter {TODAY.year} or earlier."
    }
    values, errors = validate(form, data, **{"prior_surgeries.0.year": str(TODAY.year)})
    assert errors == {} and values["prior_surgeries"][0]["year"] == TODAY.year
    _, errors = validate(form, data, **{"prior_surgeries.0.year": "2010.5"})
    assert errors == {"prior_surgeries.0.year": "Enter a whole number."}
    _, errors = validate(form, data, **{"prior_surgeries.0.year": "last year"})
    assert errors == {"prior_surgeries.0.year": "Enter a number."}


def test_surgical_show_if_and_group() -> None:
    form = specialty("surgical").intake
    data = INTAKE_OK["surgical"]
    values, errors = validate(form, data, anaesthesia_details="ignored")
    assert errors == {} and values["anaesthesia_details"] is None
    _, errors = validate(form, data, anaesthesia_problems="yes")
    assert set(errors) == {"anaesthesia_details"}
    _, errors = validate(form, data, alternatives=["medicines", "other"])
    assert errors == {"alternatives_other": "Answer “What else was talked about?”."}

    rows = {
        "prior_surgeries.1.operation": "",
        "prior_surgeries.1.year": "",
        "prior_surgeries.2.operation": "Tonsils removed",  # no year
        "prior_surgeries.3.operation": "Knee arthroscopy",
        "prior_surgeries.3.year": "2019",
    }
    values, errors = validate(form, {**data, **rows})
    assert [s["operation"] for s in values["prior_surgeries"]] == [
        "Appendix removed",
        "Tonsils removed",
        "Knee arthroscopy",
    ]
    assert values["prior_surgeries"][0]["year"] == 2010
    assert errors == {"prior_surgeries.2.year": "Answer “Year”."}

    values, errors = validate(form, {**data, **rows}, had_surgery="no")
    assert errors == {} and values["prior_surgeries"] == []


def test_surgical_review_show_if() -> None:
    form = specialty("surgical").review
    data = {k: v for k, v in REVIEW_OK["surgical"].items() if k not in ("timing",)}
    _, errors = validate(form, data)
    assert errors == {"timing": "Choose an answer for “Recommended timing”."}
    values, errors = validate(form, REVIEW_OK["surgical"], surgery_indicated="no")
    assert errors == {} and values["recommended_approach"] is None and values["timing"] is None
    _, errors = validate(form, REVIEW_OK["surgical"], surgery_indicated="uncertain")
    assert set(errors) == {"information_needed"}


def test_surgical_cross_field_rules(host: PluginHost) -> None:
    data = INTAKE_OK["surgical"]
    assert cross(host, "surgical", data) == {}
    errors = cross(host, "surgical", data, born=date(2012, 3, 1))
    assert errors == {
        "prior_surgeries.0.year": "This year is before the patient was born (2012). Check the year."
    }
    assert cross(host, "surgical", data, born=date(2010, 12, 31)) == {}  # same year is fine
    errors = cross(host, "surgical", data, comorbidities=["none", "diabetes"])
    assert set(errors) == {"comorbidities"} and "None of these" in errors["comorbidities"]
    assert cross(host, "surgical", data, comorbidities=["none"]) == {}
    errors = cross(host, "surgical", data, alternatives=["none_discussed", "medicines"])
    assert set(errors) == {"alternatives"}


# --- pathology --------------------------------------------------------------------------------


def test_pathology_field_rules() -> None:
    form = specialty("pathology").intake
    data = INTAKE_OK["pathology"]
    future = (TODAY + timedelta(days=3)).isoformat()
    _, errors = validate(form, data, collection_date=future)
    assert errors == {"collection_date": "This date cannot be in the future."}
    _, errors = validate(form, data, tests_done=["he", "tarot"])
    assert errors == {"tests_done": "Choose from the options shown."}


def test_pathology_show_if() -> None:
    form = specialty("pathology").intake
    data = INTAKE_OK["pathology"]
    values, errors = validate(form, data, report_kind="blood_work")
    assert errors == {}
    assert values["specimen_type"] is None and values["specimen_site"] is None
    assert values["material_available"] is None
    for kind in ("biopsy", "cytology"):
        _, errors = validate(form, data, report_kind=kind, specimen_type=None, specimen_site=None)
        assert set(errors) == {"specimen_type", "specimen_site"}
    _, errors = validate(form, data, report_kind="other")
    assert errors == {"report_kind_other": "Answer “What kind of test was it?”."}


def test_pathology_findings_group() -> None:
    form = specialty("pathology").review
    rows = {
        "findings.1.specimen_label": "",
        "findings.2.specimen_label": "B: axillary lymph node",
        "findings.2.margin_status": "sideways",
        "findings.3.specimen_label": "C: wide local excision",
        "findings.3.diagnosis": "Residual carcinoma",
        "findings.3.margin_status": "close",
        "findings.3.closest_margin_mm": "1.5",
        "findings.4.specimen_label": "D: re-excision",
        "findings.4.diagnosis": "No residual tumour",
        "findings.4.margin_status": "positive",
        "findings.4.closest_margin_mm": "0",  # hidden when involved: dropped
    }
    values, errors = validate(form, {**REVIEW_OK["pathology"], **rows})
    labels = [f["specimen_label"] for f in values["findings"]]
    assert labels == [
        "A: left breast core",
        "B: axillary lymph node",
        "C: wide local excision",
        "D: re-excision",
    ]
    assert errors == {
        "findings.2.diagnosis": "Answer “Diagnosis”.",
        "findings.2.margin_status": "Choose one of the options.",
    }
    assert values["findings"][2]["closest_margin_mm"] == 1.5
    assert values["findings"][3]["closest_margin_mm"] is None

    _, errors = validate(form, REVIEW_OK["pathology"], **{"findings.0.closest_margin_mm": "0"})
    assert errors == {}  # not applicable margin: distance dropped, not an error
    _, errors = validate(
        form,
        REVIEW_OK["pathology"],
        **{"findings.0.margin_status": "close", "findings.0.closest_margin_mm": "250"},
    )
    assert errors == {"findings.0.closest_margin_mm": "Enter 200 mm or less."}


def test_pathology_review_show_if() -> None:
    form = specialty("pathology").review
    values, errors = validate(form, REVIEW_OK["pathology"], adequacy_comment="ignored")
    assert errors == {} and values["adequacy_comment"] is None
    _, errors = validate(form, REVIEW_OK["pathology"], specimen_adequacy="limited")
    assert set(errors) == {"adequacy_comment"}


def test_pathology_cross_field_rules(host: PluginHost) -> None:
    data = INTAKE_OK["pathology"]
    assert cross(host, "pathology", data) == {}
    born = TODAY - timedelta(days=30)
    errors = cross(host, "pathology", data, born=born)
    assert errors == {
        "collection_date": f"This date is before the patient was born ({born_text(born)}). "
        "Check the date."
    }
    errors = cross(host, "pathology", data, tests_done=["he", "unknown"])
    assert set(errors) == {"tests_done"} and "I don't know" in errors["tests_done"]
    assert cross(host, "pathology", data, tests_done=["unknown"]) == {}


# --- radiology --------------------------------------------------------------------------------


def test_radiology_field_rules() -> None:
    spec = specialty("radiology")
    future = (TODAY + timedelta(days=1)).isoformat()
    _, errors = validate(spec.intake, INTAKE_OK["radiology"], study_date=future)
    assert errors == {"study_date": "This date cannot be in the future."}
    _, errors = validate(
        spec.intake, INTAKE_OK["radiology"], **{"prior_studies.0.study_date": future}
    )
    assert errors == {"prior_studies.0.study_date": "This date cannot be in the future."}

    review = REVIEW_OK["radiology"]
    for size, message in [
        ("501", "Enter 500 mm or less."),
        ("-1", "Enter 0 mm or more."),
        ("8.5", "Enter a whole number."),
        ("eight", "Enter a number."),
    ]:
        _, errors = validate(spec.review, review, **{"lesions.0.size_mm": size})
        assert errors == {"lesions.0.size_mm": message}
    values, errors = validate(spec.review, review, **{"lesions.0.size_mm": "500"})
    assert errors == {} and values["lesions"][0]["size_mm"] == 500

    assert spec.accepted_kinds == (DocumentKind.PDF, DocumentKind.IMAGE, DocumentKind.DICOM)
    documents = {d.key: d for d in spec.required_documents}
    assert documents["images"].kinds == (DocumentKind.DICOM,) and documents["images"].required
    assert DocumentKind.DICOM not in documents["report"].kinds and documents["report"].required
    assert not documents["prior_studies"].required


def test_radiology_show_if_and_group() -> None:
    form = specialty("radiology").intake
    data = INTAKE_OK["radiology"]
    values, errors = validate(form, data, has_prior_studies="no")
    assert errors == {} and values["prior_studies"] == []
    prior_less = {k: v for k, v in data.items() if not k.startswith("prior_studies.")}
    _, errors = validate(form, prior_less)
    assert errors == {"prior_studies": "Add at least 1 earlier scan."}
    _, errors = validate(form, data, modality="other", body_part="other")
    assert set(errors) == {"modality_other", "body_part_other"}

    rows = {
        "prior_studies.1.modality": "",
        "prior_studies.1.study_date": "",
        "prior_studies.2.modality": "xray",  # no date
        "prior_studies.2.body_part": "chest",
    }
    values, errors = validate(form, {**data, **rows})
    assert [p["modality"] for p in values["prior_studies"]] == ["ct", "xray"]
    assert errors == {"prior_studies.2.study_date": "Answer “Date”."}


def test_radiology_birads() -> None:
    form = specialty("radiology").review
    birads = form.field("birads")
    assert [c.value for c in birads.choices] == ["0", "1", "2", "3", "4A", "4B", "4C", "5", "6"]
    assert birads.kind == "scored_category"
    values, errors = validate(form, REVIEW_OK["radiology"], birads="4B")
    assert errors == {} and values["birads"] is None  # not breast imaging: dropped
    _, errors = validate(form, REVIEW_OK["radiology"], breast_imaging="yes")
    assert errors == {"birads": "Choose an answer for “BI-RADS assessment category”."}
    values, errors = validate(form, REVIEW_OK["radiology"], breast_imaging="yes", birads="4B")
    assert errors == {} and values["birads"] == "4B"
    _, errors = validate(form, REVIEW_OK["radiology"], breast_imaging="yes", birads="4D")
    assert errors == {"birads": "Choose one of the options."}


def test_radiology_cross_field_rules(host: PluginHost) -> None:
    data = INTAKE_OK["radiology"]
    assert cross(host, "radiology", data) == {}
    assert cross(host, "radiology", data, born=None) == {}

    born = LAST_YEAR + timedelta(days=1)
    errors = cross(host, "radiology", data, born=born, has_prior_studies="no")
    assert errors == {
        "study_date": f"This date is before the patient was born ({born_text(born)}). "
        "Check the date."
    }
    born = TWO_YEARS_AGO + timedelta(days=1)
    errors = cross(host, "radiology", data, born=born)
    assert errors == {
        "prior_studies.0.study_date": f"This date is before the patient was born "
        f"({born_text(born)}). Check the date."
    }
    # An earlier scan both after the main scan (the plugin's rule) and before birth (core's
    # rule): core's message is the one shown.
    born = LAST_YEAR + timedelta(days=20)
    later = (LAST_YEAR + timedelta(days=10)).isoformat()
    errors = cross(host, "radiology", data, born=born, **{"prior_studies.0.study_date": later})
    assert set(errors) == {"study_date", "prior_studies.0.study_date"}
    assert errors["prior_studies.0.study_date"].startswith("This date is before the patient")

    later = (LAST_YEAR + timedelta(days=10)).isoformat()
    errors = cross(host, "radiology", data, **{"prior_studies.0.study_date": later})
    assert errors == {
        "prior_studies.0.study_date": "An earlier scan must be from before the scan you want "
        f"reviewed ({LAST_YEAR.isoformat()}). Check the date, or swap the two scans."
    }
    same_day = LAST_YEAR.isoformat()
    assert cross(host, "radiology", data, **{"prior_studies.0.study_date": same_day}) == {}

    errors = cross(host, "radiology", data, modality="mammogram")
    assert set(errors) == {"body_part"} and "Breast" in errors["body_part"]
    assert cross(host, "radiology", data, modality="mammogram", body_part="breast") == {}


# --- hooks ------------------------------------------------------------------------------------


SPY = Specialty(slug="spy", title="Spy", summary="Choose this when…")


class Spy:
    """A plugin whose hooks have no `if specialty.slug != …` guard: core must call them for its
    own specialty only."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [SPY]

    @hookimpl
    def consilium_validate_intake(self, specialty: Specialty) -> dict[str, str]:
        self.calls.append(specialty.slug)
        return {"anything": "The spy's rule."}


def test_hook_consilium_validate_intake(tmp_path: Path) -> None:
    spy = Spy()
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("spy", spy)])
    born = date(2005, 1, 1)
    # Each built-in's own rules, for its own specialty (called with keyword arguments; a
    # plugin takes only those it uses).
    rules = {
        "surgical": ({"comorbidities": ["none", "diabetes"]}, "comorbidities"),
        "pathology": ({"tests_done": ["unknown", "he"]}, "tests_done"),
        "radiology": ({"modality": "mammogram", "body_part": "chest"}, "body_part"),
    }
    for slug, (values, name) in rules.items():
        assert set(MODULES[slug].consilium_validate_intake(values=values)) == {name}
        assert set(host.validate_intake(specialty(slug), values, born)) == {name}
    assert not hasattr(plugins.general, "consilium_validate_intake")  # it needs none

    # The date-of-birth rules are core's (not_before_birth): no plugin repeats them.
    bad_dates = {
        "general": {"diagnosis_date": "2000-01-01"},
        "surgical": {"prior_surgeries": [{"operation": "x", "year": 2000, "hospital": None}]},
        "pathology": {"collection_date": "2000-01-01"},
        "radiology": {"study_date": "2000-01-01"},
    }
    for slug, values in bad_dates.items():
        errors = host.validate_intake(specialty(slug), values, born)
        assert len(errors) == 1 and "before the patient was born" in next(iter(errors.values()))
        assert host.validate_intake(specialty(slug), values, None) == {}
    for path in (Path(__file__).parents[1] / "plugins").rglob("*.py"):
        assert "birth_date" not in path.read_text(), path  # no plugin compares with it

    # A plugin's hook is called for its own specialty only.
    assert spy.calls == []
    assert host.validate_intake(SPY, {}, born) == {"anything": "The spy's rule."}
    assert spy.calls == ["spy"]
    stranger = Specialty(slug="cardiology", title="Cardiology", summary="Choose this when…")
    assert host.validate_intake(stranger, {"study_date": "2000-01-01"}, born) == {}
    assert spy.calls == ["spy"]


def test_not_before_birth_is_a_form_rule() -> None:
    form = Form(
        version=1,
        fields=(
            DateField(name="seen", label="Seen", not_before_birth=True),
            DateField(name="free", label="Any date"),
            Repeating(
                name="operations",
                label="Operations",
                fields=(
                    Year(name="year", label="Year", required=True, not_before_birth=True),
                    DateField(name="on", label="On", not_before_birth=True),
                ),
            ),
        ),
    )
    born = date(2001, 6, 15)
    raw = {
        "seen": "2001-06-14",
        "free": "1999-01-01",
        "operations.3.year": "2000",
        "operations.7.year": "2001",
        "operations.7.on": "2001-06-15",
        "operations.9.year": "2005",
        "operations.9.on": "2001-01-31",
    }
    values, errors = form.validate(MappingFormData(raw))
    assert errors == {}  # a field's own checks know nothing of the date of birth
    # Keys as for consilium_validate_intake: an item by its position in the cleaned list.
    assert form.check_subject(values, born) == {
        "seen": "This date is before the patient was born (15 Jun 2001). Check the date.",
        "operations.0.year": "This year is before the patient was born (2001). Check the year.",
        "operations.2.on": "This date is before the patient was born (15 Jun 2001). "
        "Check the date.",
    }
    assert form.check_subject(values, None) == {}  # not known yet: nothing to check
    assert form.check_subject({"seen": None, "operations": []}, born) == {}

    # A year is a whole number from 1900 to this year, stored as an int.
    year = Year(name="year", label="Year")
    assert year.kind == "number" and year.clean(MappingFormData({"year": "2019"}), "") == (
        2019,
        None,
    )
    assert year.clean(MappingFormData({"year": "1899"}), "")[1] == "Enter 1900 or more."
    future = str(TODAY.year + 1)
    assert year.clean(MappingFormData({"year": future}), "") == (
        future,
        f"This year is in the future. Enter {TODAY.year} or earlier.",
    )
    assert Year(name="year", label="Year", allow_future=True).clean(
        MappingFormData({"year": future}), ""
    ) == (TODAY.year + 1, None)
    with pytest.raises(ValueError, match="whole number"):
        Form(version=1, fields=(Year(name="year", label="Year", decimals=1),))


def test_hook_consilium_assets(host: PluginHost) -> None:
    assets = {a.name: a for a in host.assets()}
    assert set(MODULES) <= set(assets)
    for slug, module in MODULES.items():
        asset = module.consilium_assets()
        assert asset == assets[slug] and asset.templates is not None
        path = asset.templates / slug / "intake_intro.html"
        assert path.is_file()
        source = path.read_text()
        assert "{% extends" not in source
        environment = Environment(
            loader=FileSystemLoader(str(asset.templates)),
            autoescape=True,
            undefined=StrictUndefined,
        )
        html = environment.get_template(f"{slug}/intake_intro.html").render()
        assert "Before you start" in html and "<li>" in html

    # As the app loads them: every plugin's folder behind one loader, no name clashes.
    environment = Environment(loader=ChoiceLoader(host.template_loaders()), autoescape=True)
    for slug in MODULES:
        assert environment.get_template(f"{slug}/intake_intro.html").filename.startswith(
            str(assets[slug].templates)
        )


def test_groups_are_declared_sensibly() -> None:
    for slug in MODULES:
        for form in (specialty(slug).intake, specialty(slug).review):
            for spec in form.fields:
                if isinstance(spec, Repeating):
                    assert spec.fields and spec.max_items >= max(spec.min_items, 1)
                    assert any(f.required for f in spec.fields), (slug, spec.name)

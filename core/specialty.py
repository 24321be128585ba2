"""Declarative types a specialty plugin returns. A specialty is mostly data.

Everything a plugin needs to declare a specialty is importable from here (and `core.forms` for
the field types, re-exported below).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from core.forms import (  # re-exported: the field types are part of the plugin API
    Choice,
    DateField,
    Field,
    Form,
    LongText,
    MultiChoice,
    Number,
    Repeating,
    ScoredCategory,
    ShowIf,
    SingleChoice,
    Text,
    Year,
    YesNo,
)

__all__ = [
    "AGREES",
    "DIFFERS",
    "DIFFERS_IN_DETAIL",
    "Assets",
    "Choice",
    "ConcordanceGrade",
    "DateField",
    "DocumentFacts",
    "DocumentKind",
    "Field",
    "Form",
    "LongText",
    "MultiChoice",
    "Number",
    "PhysicalMaterial",
    "RecordsDetail",
    "Repeating",
    "ReportSection",
    "RequiredDocument",
    "ScoredCategory",
    "ShowIf",
    "SingleChoice",
    "Specialty",
    "Term",
    "Text",
    "Year",
    "YesNo",
]

SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")


class DocumentKind:
    """Kinds of uploaded record a specialty accepts (sniffed from content, not file names)."""

    PDF = "pdf"
    IMAGE = "image"  # JPEG, PNG, HEIC/WebP photos of paper reports or films
    DICOM = "dicom"  # imaging studies (Part 10 files, folders or ZIPs of them)
    ALL = (PDF, IMAGE, DICOM)


@dataclass(frozen=True)
class RequiredDocument:
    """One line of the records checklist, e.g. "The original radiologist's report"."""

    key: str
    label: str
    help: str = ""
    kinds: tuple[str, ...] = (DocumentKind.PDF, DocumentKind.IMAGE)
    required: bool = True  # False: recommended, does not hold up the case


@dataclass(frozen=True)
class PhysicalMaterial:
    """Something that reaches the hospital by post or courier, not by upload: glass slides,
    tissue blocks, a CD of images. The patient's page says how to send it (its `help`, the
    hospital's address and the case reference); a coordinator records its arrival and its
    return. A `required` one that applies to a case holds it up until it has arrived."""

    key: str  # stable; distinct from the keys of `required_documents`
    label: str  # "The original glass slides"
    help: str = ""  # for the patient: who sends it, how it is packed
    required: bool = True  # False: asked for, but the review can start without it
    # It applies to a case when every condition holds on the intake answers (none: always).
    applies_when: tuple[ShowIf, ...] = ()
    returned: bool = True  # sent back to the sender once the review is done

    def applies(self, values: dict) -> bool:
        return all(condition.holds(values) for condition in self.applies_when)


# Whether a second opinion agrees with the first, in the three levels every specialty shares:
# what the patient's report says in plain words, and what statistics count across specialties.
AGREES = "agrees"
DIFFERS_IN_DETAIL = "differs_in_detail"  # differs in details that do not change care
DIFFERS = "differs"  # differs in a way that changes care
AGREEMENT_LEVELS = (AGREES, DIFFERS_IN_DETAIL, DIFFERS)


@dataclass(frozen=True)
class ConcordanceGrade(Choice):
    """One grade of a specialty's own concordance scale (for internal quality review, never
    printed on the patient's report), with the shared level it counts as (`AGREES`,
    `DIFFERS_IN_DETAIL` or `DIFFERS`)."""

    level: str = AGREES


# Names core's review fields use (core/reviews/form.py): a specialty's review form must not.
CORE_REVIEW_NAMES = frozenset(
    {
        "materials",
        "agreement",
        "concordance",
        "management_change",
        "limitations",
        "limitations_comment",
        "pending_tests",
        "patient_summary",
        "amend_reason",
        "amend_notified",
        "version",
    }
)
CORE_REVIEW_PREFIXES = ("answer_", "series_")


@dataclass(frozen=True)
class ReportSection:
    """A section of the doctor's report and the review-form fields that fill it."""

    key: str
    title: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Term:
    """A term the specialty's reports use, explained for patients in a sentence or two (printed
    under "Words used in this report" when the report uses it). `also` lists other spellings
    the report may use ("BI-RADS" also "BIRADS")."""

    term: str
    explanation: str
    also: tuple[str, ...] = ()

    def spellings(self) -> tuple[str, ...]:
        return (self.term, *self.also)


@dataclass(frozen=True)
class Assets:
    """Folders a plugin contributes: templates (loaded after core's) and static files (served
    under /static/plugins/<name>/)."""

    name: str
    templates: Path | None = None
    static: Path | None = None


@dataclass(frozen=True)
class DocumentFacts:
    """What a plugin learned by reading one uploaded document (`consilium_inspect_document`)."""

    checklist_item: str | None = None  # key of the RequiredDocument this document satisfies
    flags: tuple[str, ...] = ()  # short plain-language notes for the coordinator
    facts: dict[str, str] = field(default_factory=dict)  # e.g. {"modality": "CT"}


@dataclass(frozen=True)
class RecordsDetail:
    """What a plugin tells staff about one line of a case's records (`consilium_describe_records`):
    plain text, escaped by core. `warnings` are shown as problems to check."""

    lines: tuple[str, ...] = ()  # e.g. "Series 2: AX T2, 24 images"
    warnings: tuple[str, ...] = ()  # e.g. "These files name more than one patient."


@dataclass(frozen=True)
class Specialty:
    slug: str  # stable identifier, lower case, stored on cases
    title: str  # "Radiology second opinion"
    summary: str  # one plain-language sentence for patients: "Choose this when…"
    audience: str = ""  # who it is for, e.g. "Adults and children with an imaging study"
    intake: Form = field(default_factory=lambda: Form(version=1, fields=()))
    required_documents: tuple[RequiredDocument, ...] = ()
    physical_materials: tuple[PhysicalMaterial, ...] = ()  # sent by post, recorded by staff
    accepted_kinds: tuple[str, ...] = (DocumentKind.PDF, DocumentKind.IMAGE)
    review: Form = field(default_factory=lambda: Form(version=1, fields=()))
    # How far the second opinion agrees with the first, graded the specialty's way.
    concordance: tuple[ConcordanceGrade, ...] = ()
    report_sections: tuple[ReportSection, ...] = ()
    # The specialty's part of the report, in the plugin's templates (docs/plugins.md, "The
    # report"): None renders `report_sections` in order, each field as label and answer.
    report_template: str | None = None  # e.g. "radiology/report.html"
    glossary: tuple[Term, ...] = ()  # terms its reports use, explained for patients
    for_children: bool = True
    # Areas within the specialty a doctor may declare (e.g. radiology: neuroradiology, breast);
    # a case may need one (`consilium_suggest_subspecialty`), and is offered to a doctor who
    # has it first. `value` is stored on doctors' profiles: keep it stable.
    subspecialties: tuple[Choice, ...] = ()

    def __post_init__(self) -> None:
        if not SLUG_RE.match(self.slug):
            raise ValueError(f"specialty slug {self.slug!r} must be lower case, 2–32 characters")
        review_names = {f.name for f in self.review.fields}
        taken = {
            name
            for name in review_names
            if name in CORE_REVIEW_NAMES or name.startswith(CORE_REVIEW_PREFIXES)
        }
        if taken:
            raise ValueError(f"{self.slug}: review field names {taken} are core's")
        for grade in self.concordance:
            if not isinstance(grade, ConcordanceGrade) or grade.level not in AGREEMENT_LEVELS:
                raise ValueError(
                    f"{self.slug}: concordance grade {grade.value!r} must be a ConcordanceGrade "
                    f"with a level in {AGREEMENT_LEVELS}"
                )
        for section in self.report_sections:
            missing = set(section.fields) - review_names
            if missing:
                raise ValueError(
                    f"{self.slug}: report section {section.key} names unknown fields {missing}"
                )
        for kind in self.accepted_kinds:
            if kind not in DocumentKind.ALL:
                raise ValueError(f"{self.slug}: unknown document kind {kind!r}")
        materials = [item.key for item in self.physical_materials]
        documents = {item.key for item in self.required_documents}
        if len(set(materials)) != len(materials) or documents & set(materials):
            raise ValueError(f"{self.slug}: physical material keys must be unique: {materials}")
        keys = [choice.value for choice in self.subspecialties]
        if len(set(keys)) != len(keys) or not all(SLUG_RE.match(key) for key in keys):
            raise ValueError(f"{self.slug}: subspecialty values must be unique slugs: {keys}")

    def materials_for(self, values: dict) -> tuple[PhysicalMaterial, ...]:
        """The physical materials asked of a case with these intake answers."""
        return tuple(item for item in self.physical_materials if item.applies(values))

    def subspecialty_label(self, value: str | None) -> str:
        """The label of one of this specialty's subspecialties ("" for None or unknown)."""
        return next((c.label for c in self.subspecialties if c.value == value), "")

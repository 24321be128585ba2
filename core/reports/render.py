"""A report as people read it: built from the signed review (never from a draft), rendered to
HTML for the report page and to a PDF, the same template for both.

What every report carries, whatever the specialty, is core's (`templates/reports/document.html`):
who it is about, the reference and report number, the materials reviewed, the answers to the
patient's questions, agreement in plain words, "What this means for you", limitations and
pending tests, "If this differs from what your doctor told you", the communication log, the
colleagues' input, the reviewer and their registration, the date signed, the hospital and the
terms explained. The specialty's part comes from its plugin (`report_template`, or its
`report_sections` in order); docs/plugins.md, "The report", lists what the template receives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from core.cases import service as cases
from core.cases.tables import Case
from core.forms import DATE_FORMAT, Field, Repeating, display_value
from core.plugins import PluginHost
from core.reviews import urgent
from core.reviews.form import LIMITATION_CHOICES
from core.reviews.service import ADDENDUM, AMENDED, text_source
from core.reviews.tables import SignedReview
from core.settings import Settings
from core.specialty import AGREES, DIFFERS, DIFFERS_IN_DETAIL, Specialty, Term

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

# Agreement with the first opinion, as the patient's report says it.
AGREEMENT_FOR_PATIENTS = {
    AGREES: "This second opinion agrees with the first opinion you were given.",
    DIFFERS_IN_DETAIL: (
        "This second opinion differs from the first in some details. The differences do not "
        "change your care."
    ),
    DIFFERS: (
        "This second opinion differs from the first in a way that may change your care. "
        "Please talk to your doctor about it soon."
    ),
}
MANAGEMENT_FOR_PATIENTS = {
    "yes": "The reviewing specialist thinks this opinion may change your treatment or care.",
    "no": "The reviewing specialist does not think this opinion changes your treatment or care.",
    "uncertain": "The reviewing specialist cannot yet say whether this changes your care.",
}
LIMITATION_WORDS = {choice.value: choice.label for choice in LIMITATION_CHOICES}
COLLEAGUE_WORDS = {"yes": "who agrees", "partly": "who partly agrees", "no": "who disagrees"}

REPORT = "report"  # a version's kind besides the corrections' (reviews.ADDENDUM, AMENDED)


@dataclass(frozen=True)
class Line:
    """One answer of the specialty's form: `name` is the field's, `value` what was chosen or
    typed (a plugin template may test it), `text` the answer in words; a repeating field has
    `entries` (a list of lists of Line) instead."""

    name: str
    label: str
    text: str = ""
    value: Any = None
    entries: tuple[tuple[Line, ...], ...] = ()


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Signature:
    name: str
    title: str
    registration_number: str
    registering_body: str
    signed_on: str  # "3 December 2026, 14:05" in the hospital's time zone


@dataclass(frozen=True)
class Later:
    """An addendum, or the correction an amended report makes, with its own signature."""

    version: int
    kind: str  # addendum | amended
    text: str  # the addendum's text, or what the amendment changed
    reason: str  # why (amended), or what is new (addendum)
    notified: str  # who was told of the correction (amended)
    signature: Signature


@dataclass
class ReportView:
    """What `templates/reports/document.html` and a plugin's `report_template` receive as
    `report`. Every text is plain (the template escapes it)."""

    hospital_name: str
    hospital_address: str
    hospital_contact: str
    specialty_slug: str
    specialty_title: str
    number: str  # the report's public number, for /verify
    version: int
    kind: str  # report | addendum | amended (what this version is)
    case_reference: str
    patient_name: str
    patient_birth_date: str  # "4 March 1961", or ""
    patient_sex: str
    guardian: str  # "Ayesha Khan (mother)" for a child's report, else ""
    materials: list[str]
    answers: list[dict[str, str]]  # [{"label": question, "text": answer}]
    agreement: str  # AGREES / DIFFERS_IN_DETAIL / DIFFERS
    agreement_words: str  # in plain words, for the patient
    management_words: str
    summary: str  # "What this means for you"
    limitations: list[str]
    limitations_comment: str
    pending_tests: str
    sections: list[Section]  # the specialty's report sections, filled, in order
    values: dict[str, Any]  # the specialty's review values by field name
    colleagues: list[dict[str, str]]  # {"name", "title", "concurs" (in words), "comment"}
    communications: list[dict[str, str]]  # {"at", "told", "method", "read_back"}
    signature: Signature
    later: list[Later] = field(default_factory=list)  # addenda and amendments, in order
    terms: list[Term] = field(default_factory=list)
    issued_on: str = ""

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def line(self, name: str) -> Line | None:
        for section in self.sections:
            for line in section.lines:
                if line.name == name:
                    return line
        return None

    @property
    def amended(self) -> Later | None:
        """The latest correction, when this version is or follows an amended report."""
        return next((x for x in reversed(self.later) if x.kind == AMENDED), None)

    @property
    def addenda(self) -> list[Later]:
        return [x for x in self.later if x.kind == ADDENDUM]


def _when(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime(f"{DATE_FORMAT} %H:%M")


def _lines(fields: Sequence[Field], values: dict[str, Any]) -> list[Line]:
    found: list[Line] = []
    for spec in fields:
        value = values.get(spec.name)
        if value in (None, "", []):
            continue
        if isinstance(spec, Repeating):
            entries = tuple(tuple(_lines(spec.fields, item)) for item in value)
            found.append(Line(spec.name, spec.label, value=value, entries=entries))
        else:
            found.append(Line(spec.name, spec.label, display_value(spec, value), value))
    return found


def sections_of(specialty: Specialty, values: dict[str, Any]) -> list[Section]:
    """The specialty's report sections filled with the signed values; answered fields that no
    section names come last, under "Other findings", so nothing signed is left out."""
    by_name = {line.name: line for line in _lines(specialty.review.fields, values)}
    placed: set[str] = set()
    sections = []
    for spec in specialty.report_sections:
        lines = tuple(by_name[name] for name in spec.fields if name in by_name)
        placed.update(spec.fields)
        if lines:
            sections.append(Section(spec.key, spec.title, lines))
    rest = tuple(line for name, line in by_name.items() if name not in placed)
    if rest:
        sections.append(Section("other", "Other findings", rest))
    return sections


def _signature(row: SignedReview, zone: ZoneInfo) -> Signature:
    return Signature(
        name=row.signer_name,
        title=row.signer_title,
        registration_number=row.registration_number,
        registering_body=row.registering_body,
        signed_on=_when(row.signed_at, zone),
    )


def terms_used(glossary: Sequence[Term], texts: Sequence[str]) -> list[Term]:
    """The glossary's terms that the report's text uses (whole words, any case)."""
    haystack = "\n".join(text for text in texts if text)
    found = []
    for term in glossary:
        for spelling in term.spellings():
            if re.search(rf"(?<!\w){re.escape(spelling)}(?!\w)", haystack, re.IGNORECASE):
                found.append(term)
                break
    return found


def _texts(view: ReportView) -> list[str]:
    texts = [view.summary, view.limitations_comment, view.pending_tests]
    texts += [a["text"] for a in view.answers]
    for section in view.sections:
        for line in section.lines:
            texts += [line.label, line.text]
            texts += [f"{x.label} {x.text}" for entry in line.entries for x in entry]
    texts += [x.text for x in view.later]
    return texts


async def build_view(
    case: Case,
    number: str,
    reviews: Sequence[SignedReview],
    specialty: Specialty,
    settings: Settings,
    *,
    explain: bool = True,
) -> ReportView:
    """The report of `case` as of the last of `reviews` (its signed rows in sequence order, up
    to the version being shown): the latest full review (the first, or the last amendment),
    then every addendum and amendment in order. `explain=False` leaves out the glossary's terms
    (a regular expression per spelling over the whole text): the PDF's worker finds them."""
    zone = ZoneInfo(settings.time_zone)
    latest = reviews[-1]
    base = text_source(reviews)
    assert base is not None, "a report starts with a signed review"
    content = json.loads(base.content)
    specialty_values = dict(content["specialty"].get("values", {}))
    core_values = dict(content["core"].get("values", {}))
    later = []
    for row in reviews[1:]:
        extra = json.loads(row.content)
        later.append(
            Later(
                version=row.sequence,
                kind=extra.get("kind", ADDENDUM),
                text=extra.get("text", ""),
                reason=extra.get("reason", ""),
                notified=extra.get("notified", ""),
                signature=_signature(row, zone),
            )
        )
    subject = await cases.subject_of(case)
    urgency = await urgent.urgency_of(case)
    view = ReportView(
        hospital_name=settings.hospital_name,
        hospital_address=settings.hospital_address,
        hospital_contact=f"{settings.contact_email} · {settings.contact_phone}",
        specialty_slug=specialty.slug,
        specialty_title=specialty.title,
        number=number,
        version=latest.sequence,
        kind=json.loads(latest.content).get("kind", REPORT),
        case_reference=case.reference,
        patient_name=subject.name,
        patient_birth_date=(subject.birth_date.strftime("%-d %B %Y") if subject.birth_date else ""),
        patient_sex=subject.sex,
        guardian=f"{subject.guardian} ({subject.relationship})" if subject.guardian else "",
        materials=list(content.get("materials", [])),
        answers=[dict(a) for a in content.get("answers", [])],
        agreement=base.agreement,
        agreement_words=AGREEMENT_FOR_PATIENTS.get(base.agreement, ""),
        management_words=MANAGEMENT_FOR_PATIENTS.get(core_values.get("management_change", ""), ""),
        summary=core_values.get("patient_summary") or "",
        limitations=[LIMITATION_WORDS.get(v, v) for v in core_values.get("limitations") or []],
        limitations_comment=core_values.get("limitations_comment") or "",
        pending_tests=core_values.get("pending_tests") or "",
        sections=sections_of(specialty, specialty_values),
        values=specialty_values,
        colleagues=[
            {
                "name": c.get("name", ""),
                "title": c.get("title", ""),
                "concurs": COLLEAGUE_WORDS.get(c.get("concurs", ""), ""),
                "comment": c.get("comment", ""),
            }
            for c in content.get("colleagues", [])
        ],
        communications=[
            {
                "at": _when(line.at, zone),
                "told": line.told,
                "method": line.method,
                "read_back": "yes" if line.read_back else "no",
            }
            for line in urgency.log
        ],
        signature=_signature(base, zone),
        later=later,
        issued_on=_when(latest.signed_at, zone),
    )
    if explain:
        view.terms = terms_used(specialty.glossary, _texts(view))
    return view


# Rendering ----------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _environment(folders: tuple[str, ...]) -> Environment:
    loaders = [FileSystemLoader(folder) for folder in folders]
    return Environment(loader=ChoiceLoader(loaders), autoescape=select_autoescape(default=True))


def template_folders(plugins: PluginHost) -> tuple[str, ...]:
    """Core's templates first, then the plugins' (a plugin's report template lives there)."""
    return (str(TEMPLATES), *(str(a.templates) for a in plugins.assets() if a.templates))


def document_html(
    view: ReportView,
    folders: tuple[str, ...],
    specialty_template: str | None,
    *,
    verify_url: str,
    glossary: Sequence[Term] | None = None,
) -> str:
    """The report as a whole HTML document, for the PDF (the same parts as the report page).
    Plain data in, text out: the PDF's worker process calls it too. With `glossary`, the terms
    the report uses are found first."""
    if glossary is not None:
        view.terms = terms_used(glossary, _texts(view))
    template = _environment(folders).get_template("reports/pdf.html")
    return template.render(
        report=view, specialty_template=specialty_template, verify_url=verify_url
    )


def render_document(
    view: ReportView, specialty: Specialty, plugins: PluginHost, *, verify_url: str
) -> str:
    return document_html(
        view, template_folders(plugins), specialty.report_template, verify_url=verify_url
    )

"""What every second opinion says, whatever the specialty: core's fields of the review form.

The specialty's own `review` form (its plugin) sits between the materials reviewed and these
conclusions. Core's fields are built per case: one answer per question the patient asked, and
the materials to tick are the case's own records, imaging series and physical materials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.documents.listing import RecordLine, facts_of
from core.forms import Choice, LongText, MultiChoice, SingleChoice
from core.specialty import AGREES, DIFFERS, DIFFERS_IN_DETAIL, Specialty

AGREEMENT_CHOICES = (
    Choice(AGREES, "Agrees with the first opinion"),
    Choice(DIFFERS_IN_DETAIL, "Differs in details that do not change care"),
    Choice(DIFFERS, "Differs in a way that changes care"),
)
AGREEMENT_WORDS = {choice.value: choice.label for choice in AGREEMENT_CHOICES}

RECORDS_ONLY, MISSING, POOR_QUALITY = "records_only", "missing", "poor_quality"
LIMITATION_CHOICES = (
    Choice(RECORDS_ONLY, "Based on the records only: the patient was not examined"),
    Choice(MISSING, "Some material was missing"),
    Choice(POOR_QUALITY, "Some material was of poor quality"),
)


@dataclass(frozen=True)
class Material:
    """One thing the doctor may say they reviewed: a record, one series of a study, or a
    physical material that arrived. `value` is stable (the record's, series' or package's id)."""

    value: str
    label: str
    detail: str = ""  # identifiers, counts
    series_of: str = ""  # the study line's value, for a series


def materials_from(
    lines: Sequence[RecordLine], arrivals: Sequence[tuple[str, str, str]]
) -> list[Material]:
    """The case's records (a study once, then each of its series) and its physical materials
    (`arrivals`: (uid, label, detail))."""
    found: list[Material] = []
    for line in lines:
        lead = line.documents[0]
        value = f"doc:{lead.uid}"
        found.append(Material(value, line.label))
        series: dict[str, list[dict[str, str]]] = {}
        for doc in line.documents:
            facts = facts_of(doc)
            if facts.get("group") and facts.get("series_uid"):
                series.setdefault(facts["series_uid"], []).append(facts)
        for uid, items in sorted(series.items(), key=lambda item: _series_number(item[1][0])):
            found.append(Material(f"series:{uid}", _series_label(items), series_of=value))
    for uid, label, detail in arrivals:
        found.append(Material(f"arrival:{uid}", label, detail))
    return found


def _series_number(facts: dict[str, str]) -> int:
    try:
        return int(facts.get("series_number", ""))
    except ValueError:
        return 10**6


def _series_label(items: list[dict[str, str]]) -> str:
    first = items[0]
    words = [f"Series {first['series_number']}" if first.get("series_number") else "Series"]
    if first.get("series_description"):
        words.append(first["series_description"])
    count = len(items)
    tail = ", ".join(
        x for x in (first.get("modality", ""), f"{count} image{'s' * (count != 1)}") if x
    )
    return f"{': '.join(words)} ({tail})"


def answer_name(number: int) -> str:
    return f"answer_{number}"


@dataclass(frozen=True)
class CoreFields:
    """Core's fields for one case, in the order the page shows them around the plugin's."""

    materials: MultiChoice | None  # None: the case holds no record or material to tick
    answers: tuple[LongText, ...]
    conclusions: tuple[SingleChoice | LongText, ...]

    @property
    def all(self) -> tuple:
        return (*([self.materials] if self.materials else []), *self.answers, *self.conclusions)


AMEND_REASON, AMEND_NOTIFIED = "amend_reason", "amend_notified"
AMENDMENT_FIELDS = (
    LongText(
        name=AMEND_REASON,
        label="Why is the report amended?",
        help="What was wrong in the signed report and what this version corrects. The patient "
        "and anyone checking the report read it.",
        required=True,
        max_length=2000,
        rows=3,
    ),
    LongText(
        name=AMEND_NOTIFIED,
        label="Who was told of the correction",
        help="Who, when and how: e.g. “The patient, by phone, 5 Dec 2026; Dr A. Khan, treating "
        "oncologist, by secure message”.",
        required=True,
        max_length=1000,
        rows=2,
    ),
)


def core_fields(
    specialty: Specialty,
    questions: Sequence[str],
    materials: Sequence[Material],
    *,
    amending: bool = False,
) -> CoreFields:
    choices = tuple(
        Choice(m.value, m.label, help=m.detail) for m in materials
    )  # a series' choice reads under its study's
    answers = tuple(
        LongText(
            name=answer_name(number),
            label=question,
            help=(
                "Answer in words the patient understands. If the question is outside this "
                "review, say so and why: “This is outside the scope of this review, because …”."
            ),
            required=True,
            max_length=5000,
            rows=4,
        )
        for number, question in enumerate(questions, start=1)
    )
    conclusions: list[SingleChoice | LongText] = [
        SingleChoice(
            name="agreement",
            label="Does this opinion agree with the first one?",
            help="In plain words, as the patient's report will say it.",
            required=True,
            choices=AGREEMENT_CHOICES,
        )
    ]
    if specialty.concordance:
        conclusions.append(
            SingleChoice(
                name="concordance",
                label="Concordance grade",
                help="For quality review inside the hospital; not printed on the patient's report.",
                required=True,
                choices=specialty.concordance,
            )
        )
    conclusions += [
        SingleChoice(
            name="management_change",
            label="Would this opinion change management?",
            required=True,
            choices=(Choice("yes", "Yes"), Choice("no", "No"), Choice("uncertain", "Uncertain")),
        ),
        MultiChoice(name="limitations", label="Limitations", choices=LIMITATION_CHOICES),
        LongText(
            name="limitations_comment",
            label="About the limitations",
            help="What was missing or poor, and how it limits this opinion.",
            max_length=2000,
            rows=3,
        ),
        LongText(
            name="pending_tests",
            label="Tests still pending",
            help="Results this opinion could not take into account, and what they might change.",
            max_length=2000,
            rows=3,
        ),
        LongText(
            name="patient_summary",
            label="What this means for you",
            help=(
                "For the patient, in plain words: what you found, whether it changes anything, "
                "and what to do next. Avoid abbreviations."
            ),
            required=True,
            max_length=4000,
            rows=6,
        ),
    ]
    if amending:  # a correction of a signed report says why and who was told
        conclusions += AMENDMENT_FIELDS
    return CoreFields(
        materials=MultiChoice(
            name="materials",
            label="What you reviewed",
            help="Tick each record, imaging series and package of slides or blocks you reviewed.",
            required=True,
            choices=choices,
        )
        if choices
        else None,
        answers=answers,
        conclusions=tuple(conclusions),
    )


def cross_check(specialty: Specialty, values: dict) -> dict[str, str]:
    """Core's rules across its fields: the plain-words agreement must say what the specialty's
    grade counts as, and a limitation ticked needs no words but a missing one needs a tick."""
    errors: dict[str, str] = {}
    grade = next((g for g in specialty.concordance if g.value == values.get("concordance")), None)
    agreement = values.get("agreement")
    if grade is not None and agreement and grade.level != agreement:
        errors["agreement"] = (
            f"The concordance grade “{grade.label}” counts as “{AGREEMENT_WORDS[grade.level]}”: "
            "make the two answers say the same."
        )
    limits = values.get("limitations") or []
    if (MISSING in limits or POOR_QUALITY in limits) and not values.get("limitations_comment"):
        errors["limitations_comment"] = "Say what was missing or of poor quality."
    return errors

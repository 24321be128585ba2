"""Cases: the patient's request from draft to submission, and the state machine for the rest.

Every state change goes through `transition()`: it checks the actor's role and the current
state, and writes the new state, a timeline entry and an audit row in one transaction.
A patient only ever sees their own cases; anything else is "not found".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from piccolo.columns.combination import WhereRaw
from piccolo.query.functions.aggregate import Count

from core import clock, context, db
from core.accounts.tables import DoctorSpecialty, User
from core.audit import service as audit
from core.cases import states, turnaround
from core.cases.tables import Case, CaseEvent, ReferenceCounter
from core.errors import NotFound, Refused
from core.facts import CaseSubmitted
from core.forms import MappingFormData, StoredAnswers, kept_item_indexes
from core.ids import parse_uuid
from core.plugins import PluginHost
from core.roles import DOCTOR, PATIENT
from core.specialty import Specialty

MAX_QUESTIONS = 5
MAX_QUESTION_CHARS = 1000
SEXES = (("female", "Female"), ("male", "Male"), ("other", "Other / prefer to describe"))
RELATIONSHIPS = (
    ("parent", "I am their parent"),
    ("legal_guardian", "I am their legal guardian"),
    ("carer", "I care for them with their permission"),
)
STEPS = ("subject", "intake", "questions", "doctor")


class CaseNotFound(NotFound):
    """No such case for this person (it may exist, but is not theirs)."""


class TransitionRefused(Refused):
    """The action is not possible now; `message` says why, for the person."""


def loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# Reading ---------------------------------------------------------------------------------------


async def get_case(uid: str) -> Case:
    parsed = parse_uuid(uid)
    if parsed is None:
        raise CaseNotFound
    case = await Case.objects().where(Case.uid == parsed).first()
    if case is None:
        raise CaseNotFound
    return case


async def get_own_case(patient: User, uid: str) -> Case:
    case = await get_case(uid)
    if case.patient != patient.id:
        raise CaseNotFound
    return case


# Lists of cases, a page at a time ----------------------------------------------------------------
#
# Every list of cases has one order: a time column, then the id (unique: cases with the same time
# keep one order, so no page repeats or skips one). A page is the `limit` cases after, or before,
# a case's key in that order (keyset pagination: the same cost on the first page and the last).
# An index on (what the list filters on, the time, id) serves each list: see the migration
# "indexes for lists of cases".

CaseKey = tuple[datetime, int]  # a case's place in a list: its time in that list, its id


@dataclass(frozen=True)
class CaseOrder:
    """How a list of cases is ordered: by a time column of Case, then by id."""

    column: str  # a Timestamptz (or Date) column that no case of the list leaves empty
    newest_first: bool

    def key(self, case: Case | CaseLine) -> CaseKey:
        return getattr(case, self.column), case.id


OWN_CASES = CaseOrder("created_at", newest_first=True)
# The staff queues, by state: what a coordinator needs first.
QUEUE_ORDERS = {
    # Triage order: the case received longest ago first (every case gets the same number of
    # working days, so this is also the one due soonest).
    states.RECEIVED: CaseOrder("received_at", newest_first=False),
    states.OFFERED: CaseOrder("received_at", newest_first=False),
    states.SUBMITTED: CaseOrder("submitted_at", newest_first=False),  # waiting longest first
    states.DECLINED: CaseOrder("updated_at", newest_first=True),  # declined last first
}
# Every case on the clock, due soonest first (the coordinators' board).
BOARD_ORDER = CaseOrder("due_on", newest_first=False)
# Cases with a refund for staff to pay back (payments finds them): oldest submitted first. Every
# case with a payment was submitted (its fee is fixed then).
REFUND_QUEUE = CaseOrder("submitted_at", newest_first=False)


@dataclass(frozen=True)
class CaseLine:
    """What a list of cases shows of each (a patient's requests, the staff queues): read as a
    few columns, not as a whole `Case` with its intake answers (a third of the cost of a page
    of 25, measured in bench/pages.py). `flags_of` takes one as it takes a Case."""

    id: int
    uid: Any
    reference: str
    specialty: str
    subject_kind: str
    subject_name: str
    status: str
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    received_at: datetime | None
    due_on: date | None
    waiting_since: datetime | None


_LINE_COLUMNS = [Case._meta.get_column_by_name(name) for name in CaseLine.__dataclass_fields__]


async def cases_page(
    where: Any,
    order: CaseOrder,
    *,
    limit: int | None = None,
    after: CaseKey | None = None,
    before: CaseKey | None = None,
) -> list[CaseLine]:
    """The cases that match `where` (a condition on Case) in `order`: the first `limit` after
    the case with key `after`, or the last `limit` before the one with key `before` (still in
    `order`), or the first `limit` (None: all). One query."""
    column = Case._meta.get_column_by_name(order.column)
    query = Case.select(*_LINE_COLUMNS).where(where)
    backwards = before is not None
    descending = order.newest_first != backwards
    key = before if backwards else after
    if key is not None:
        at, case_id = key
        # The time bounds the index range; the id breaks ties among cases with that time.
        if descending:
            query = query.where(column <= at).where((column < at) | (Case.id < case_id))
        else:
            query = query.where(column >= at).where((column > at) | (Case.id > case_id))
    query = query.order_by(column, Case.id, ascending=not descending)
    if limit is not None:
        query = query.limit(limit)
    rows = [CaseLine(**row) for row in await query]
    return rows[::-1] if backwards else rows


async def cases_of(
    patient: User,
    *,
    limit: int | None = None,
    after: CaseKey | None = None,
    before: CaseKey | None = None,
) -> list[CaseLine]:
    """The patient's own cases, newest first (see `cases_page`); never anyone else's."""
    mine = Case.patient == patient.id
    return await cases_page(mine, OWN_CASES, limit=limit, after=after, before=before)


@dataclass(frozen=True)
class QueueFilter:
    """What a staff queue is narrowed to: a specialty, the doctor a case is with, at risk or
    overdue (empty: everything)."""

    specialty: str = ""
    doctor_id: int | None = None
    due: str = ""  # "", "at_risk" or "overdue" (core/cases/turnaround.py)

    def where(self, today: date) -> Any:
        """The condition on Case, for `today` in the hospital's time zone."""
        condition = Case.id.is_not_null()
        if self.specialty:
            condition &= Case.specialty == self.specialty
        if self.doctor_id is not None:
            condition &= Case.assigned_doctor == self.doctor_id
        if self.due:  # a case waiting for the patient is neither: its clock stands still
            condition &= Case.waiting_since.is_null() & Case.status.is_in(list(states.ON_THE_CLOCK))
        if self.due == turnaround.OVERDUE:
            condition &= Case.due_on < today
        elif self.due == turnaround.AT_RISK:
            # At most one working day left: due today or on the next working day.
            settings = context.settings()
            last = turnaround.add_working_days(
                today, 1, country=settings.holiday_country, weekend=settings.weekend_days
            )
            condition &= (Case.due_on >= today) & (Case.due_on <= last)
        return condition


def today() -> date:
    """Today in the hospital's time zone (what due dates are counted in)."""
    return clock.local_date(clock.now(), context.settings().time_zone)


def _status_in_literally(statuses: tuple[str, ...]) -> WhereRaw:
    """`status IN ('received', …)` with the states written into the SQL, not bound: SQLite
    uses a partial index (the board's, on the states on the clock) only for a query whose WHERE
    repeats the index's own, literally (measured: a bound IN scans a whole index instead)."""
    assert all(status.isidentifier() for status in statuses)  # our constants, never input
    return WhereRaw(f"status IN ({', '.join(repr(status) for status in statuses)})")


async def cases_in(
    status: str | tuple[str, ...],
    *,
    filters: QueueFilter | None = None,
    limit: int | None = None,
    after: CaseKey | None = None,
    before: CaseKey | None = None,
) -> list[CaseLine]:
    """The cases in this state, in its queue's order (`QUEUE_ORDERS`; see `cases_page`), or in
    any of these states due soonest first (`BOARD_ORDER`), narrowed by `filters`."""
    if isinstance(status, tuple):
        where, order = _status_in_literally(status), BOARD_ORDER
    else:
        where, order = Case.status == status, QUEUE_ORDERS[status]
    if filters is not None:
        where &= filters.where(today())
    return await cases_page(where, order, limit=limit, after=after, before=before)


async def counts_in(statuses: Sequence[str], filters: QueueFilter | None = None) -> dict[str, int]:
    """How many cases each of these states holds, narrowed by `filters`: one query."""
    where = Case.status.is_in(list(statuses))
    if filters is not None:
        where &= filters.where(today())
    rows = await Case.select(Case.status, Count(alias="count")).where(where).group_by(Case.status)
    found = {row["status"]: row["count"] for row in rows}
    return {status: found.get(status, 0) for status in statuses}


# Uploads write one timeline entry per file (in the transaction that stores it); the timeline
# shows a run of them as one line: "Records added: 5 files".
FILE_EVENTS = {
    "records_added": "Records added",
    "records_sent": "Records sent by a doctor through an upload link",
}
MERGE_WITHIN = timedelta(minutes=30)


def files_text(count: int) -> str:
    return f"{count:,} file{'' if count == 1 else 's'}"


# How a case finds its doctor, step by step, is for staff; the patient's timeline says when a
# specialist accepted it (and the case page names them).
STAFF_ONLY_EVENTS = frozenset({"offer", "decline_offer", "offer_expired", "hand_back", "reassign"})


async def timeline(case: Case, *, for_staff: bool = False) -> list[CaseEvent]:
    """The case's timeline, oldest first; a run of uploads by the same person is one line.
    Patients do not see the steps of finding a doctor (`STAFF_ONLY_EVENTS`)."""
    query = CaseEvent.objects().where(CaseEvent.case == case.id)
    if not for_staff:
        query = query.where(CaseEvent.action.not_in(list(STAFF_ONLY_EVENTS)))
    events = await query.order_by(CaseEvent.at)
    lines: list[CaseEvent] = []
    count = 0
    for event in events:
        last = lines[-1] if lines else None
        if (
            last is not None
            and event.action in FILE_EVENTS
            and event.action == last.action
            and event.actor == last.actor
            and event.at - last.at <= MERGE_WITHIN
        ):
            count += 1
            last.note = f"{FILE_EVENTS[event.action]}: {files_text(count)}"
            continue
        count = 1
        lines.append(event)
    return lines


@dataclass(frozen=True)
class PatientStatus:
    """What the patient's case page says about where the case stands, and the one next step."""

    label: str  # "Submitted"
    text: str  # what is still needed, or what happens next
    action: str = ""  # the next step as a link text ("Upload your records"), if any
    href: str = ""  # where it goes ("#records")


@dataclass(frozen=True)
class CaseFlags:
    """What pages may show or offer for a case, decided here so that templates hold no rules."""

    draft: bool
    submitted: bool
    closed_early: bool  # declined or cancelled
    can_cancel: bool
    accepts_records: bool
    shows_due_date: bool


def accepts_records(case: Case | CaseLine) -> bool:
    """Whether records may be added to the case now (core/cases/states.py)."""
    return states.accepts_records(case.status, waiting=case.waiting_since is not None)


def accepting_records() -> Any:
    """`accepts_records` as a condition on Case, for queries."""
    return Case.status.is_in(list(states.ACCEPTING_RECORDS)) | (
        Case.waiting_since.is_not_null() & Case.status.is_in(list(states.BEFORE_REPORT))
    )


def flags_of(case: Case | CaseLine) -> CaseFlags:
    return CaseFlags(
        draft=case.status == states.DRAFT,
        submitted=case.status == states.SUBMITTED,
        closed_early=case.status in (states.DECLINED, states.CANCELLED),
        can_cancel=case.status in states.TRANSITIONS["cancel"].sources,
        accepts_records=accepts_records(case),
        # Until the report: once it is ready, a due date is news of nothing.
        shows_due_date=case.due_on is not None and case.status in states.ON_THE_CLOCK,
    )


def patient_status(
    case: Case,
    *,
    paid: bool = False,
    missing: Sequence[str] = (),
    by_post: Sequence[str] = (),
    fee: str = "",
    report: str = "",
) -> PatientStatus:
    """The status line for the patient. A submitted case says what is still missing: the
    required records (by name), what must come by post, the payment, or all of them. Once the
    report is signed, `report` says where it is: "ready" (the patient was told), "held" (for a
    call with the specialist first) or "preparing" (its PDF is being made)."""
    label, text = states.PATIENT_STATUS[case.status]
    if case.status in (states.REPORT_READY, states.CLOSED) and report == "ready":
        return PatientStatus(
            label,
            "Read your report here, or download it.",
            "Read your report",
            f"/cases/{case.uid}/report",
        )
    if case.status == states.REPORT_READY and report == "held":
        text = (
            "The specialist has finished your report and would like to speak with you before "
            "you read it. We will call you; you can also call us."
        )
        return PatientStatus("Report finished", text)
    if case.status == states.REPORT_READY:
        return PatientStatus(
            "Report finished", "We are preparing your report. It takes a few minutes."
        )
    if case.waiting_since is not None and case.status in states.ON_THE_CLOCK:
        text = "We asked for something more before the review can go on."
        return PatientStatus("We need something from you", text, "See what we need", "#needs")
    if case.status != states.SUBMITTED:
        return PatientStatus(label, text)
    records = "; ".join(missing)
    posted = "; ".join(by_post)
    the_fee = f"the fee of {fee}" if fee else "the fee"
    if paid and missing:
        text = f"We have your payment. To start, we still need your records: {records}."
        if by_post:
            text += f" And by post: {posted}."
        return PatientStatus(label, text, "Upload your records", "#records")
    if paid and by_post:
        text = (
            "We have your payment and your records. We start when this reaches us by post: "
            f"{posted}."
        )
        return PatientStatus(label, text, "How to send it", "#materials")
    if paid:
        text = "We have your payment and your records. We are getting your case ready."
        return PatientStatus(label, text)
    if missing:
        text = f"To start, we still need your records ({records}) and {the_fee}."
        if by_post:
            text += f" And by post: {posted}."
        return PatientStatus(label, text, "Upload your records", "#records")
    text = f"We have your records. To start, please pay {the_fee}."
    if by_post:
        text += f" We also need, by post: {posted}."
    return PatientStatus(label, text, f"Pay {fee}" if fee else "Pay the fee", "#payment")


def draft_of(case: Case) -> dict[str, Any]:
    return loads(case.draft) or {}


def answers_of(case: Case) -> StoredAnswers:
    return StoredAnswers.from_json(loads(case.intake))


def questions_of(case: Case) -> list[str]:
    return list(loads(case.questions) or [])


async def doctors_for(specialty: str) -> list[User]:
    rows = await DoctorSpecialty.select(DoctorSpecialty.doctor).where(
        DoctorSpecialty.specialty == specialty
    )
    ids = [row["doctor"] for row in rows]
    if not ids:
        return []
    return (
        await User.objects()
        .where(User.id.is_in(ids) & (User.role == DOCTOR) & User.is_active.eq(True))
        .order_by(User.full_name)
    )


# Starting and editing a draft -------------------------------------------------------------------


async def _next_reference(year: int) -> str:
    return f"SO-{year}-{await db.next_in_year(ReferenceCounter, year):05d}"


async def start_request(patient: User, specialty: Specialty, *, ip: str | None) -> Case:
    if patient.role != PATIENT:
        raise TransitionRefused("Only patient accounts can ask for a second opinion.")
    async with db.transaction():
        case = Case(
            patient=patient.id,
            specialty=specialty.slug,
            status=states.DRAFT,
            reference=await _next_reference(clock.now().year),
            intake=json.dumps(StoredAnswers(version=specialty.intake.version).as_json()),
        )
        await Case.insert(case)
        await _event(case, patient, "created", "", states.DRAFT, "Request started")
        await audit.record_about(
            "case.create",
            case,
            case=case,
            actor=patient,
            subject_uid=str(patient.uid),
            ip=ip,
        )
    return case


def _require_draft(case: Case) -> None:
    if case.status != states.DRAFT:
        raise TransitionRefused("This request was submitted and can no longer be changed.")


async def autosave(case: Case, step: str, raw: dict[str, list[str]]) -> datetime:
    """Keep whatever was typed in a step of a draft, valid or not (drafts survive a closed tab)."""
    _require_draft(case)
    if step not in STEPS:
        raise TransitionRefused("Unknown step.")
    draft = draft_of(case)
    draft[step] = raw
    saved_at = clock.now()
    await Case.update({Case.draft: json.dumps(draft), Case.updated_at: saved_at}).where(
        (Case.id == case.id) & (Case.status == states.DRAFT)
    )
    case.draft = json.dumps(draft)
    return saved_at


def _first(raw: dict[str, list[str]], name: str) -> str:
    values = raw.get(name) or [""]
    return str(values[0]).strip()


@dataclass
class Subject:
    kind: str
    name: str
    birth_date: date | None
    sex: str
    relationship: str
    guardian_declared: bool


def check_subject(patient: User, raw: dict[str, list[str]]) -> tuple[Subject, dict[str, str]]:
    errors: dict[str, str] = {}
    kind = _first(raw, "subject_kind")
    if kind not in {"self", "dependant"}:
        errors["subject_kind"] = "Choose who the second opinion is for."
    name = _first(raw, "subject_name") if kind == "dependant" else patient.full_name
    if kind == "dependant" and not name:
        errors["subject_name"] = "Enter their full name."
    elif len(name) > 200:
        errors["subject_name"] = "Use at most 200 characters."
    birth_date = None
    text = _first(raw, "subject_birth_date")
    try:
        birth_date = date.fromisoformat(text) if text else None
    except ValueError:
        errors["subject_birth_date"] = "Enter a date like 2015-04-30."
    if birth_date is None and "subject_birth_date" not in errors:
        errors["subject_birth_date"] = "Enter the date of birth."
    elif birth_date and (birth_date > date.today() or birth_date.year < 1900):
        errors["subject_birth_date"] = "Enter a date of birth in the past."
    sex = _first(raw, "subject_sex")
    if sex not in {value for value, _ in SEXES}:
        errors["subject_sex"] = "Choose an answer for sex."
    relationship = _first(raw, "subject_relationship") if kind == "dependant" else ""
    declared = _first(raw, "guardian_declared") == "yes"
    if kind == "dependant":
        if relationship not in {value for value, _ in RELATIONSHIPS}:
            errors["subject_relationship"] = "Choose how you are related to them."
        if not declared:
            errors["guardian_declared"] = (
                "Please confirm that you may act for them and share their medical records."
            )
    subject = Subject(kind, name, birth_date, sex, relationship, declared)
    return subject, errors


async def save_subject(case: Case, patient: User, raw: dict[str, list[str]]) -> dict[str, str]:
    await autosave(case, "subject", raw)
    subject, errors = check_subject(patient, raw)
    if errors:
        return errors
    await Case.update(
        {
            Case.subject_kind: subject.kind,
            Case.subject_name: subject.name,
            Case.subject_birth_date: subject.birth_date,
            Case.subject_sex: subject.sex,
            Case.subject_relationship: subject.relationship,
            Case.guardian_declared: subject.guardian_declared,
        }
    ).where(Case.id == case.id)
    return {}


def check_intake(
    case: Case, specialty: Specialty, plugins: PluginHost, raw: dict[str, list[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    data = MappingFormData(raw)
    values, errors = specialty.intake.validate(data)
    if not errors:
        errors = _submitted_names(
            plugins.validate_intake(specialty, values, case.subject_birth_date),
            kept_item_indexes(specialty.intake, data),
        )
    return values, errors


def _submitted_names(errors: dict[str, str], kept: dict[str, list[int]]) -> dict[str, str]:
    """Hooks name a row by its position in the cleaned list; the page by its submitted number."""
    renamed = {}
    for key, message in errors.items():
        group, _, rest = key.partition(".")
        position, _, field_name = rest.partition(".")
        if group in kept and position.isdigit() and int(position) < len(kept[group]):
            key = f"{group}.{kept[group][int(position)]}.{field_name}"
        renamed[key] = message
    return renamed


async def save_intake(
    case: Case, specialty: Specialty, plugins: PluginHost, raw: dict[str, list[str]]
) -> dict[str, str]:
    await autosave(case, "intake", raw)
    values, errors = check_intake(case, specialty, plugins, raw)
    if not errors:
        answers = StoredAnswers.capture(specialty.intake, values)
        await Case.update({Case.intake: json.dumps(answers.as_json())}).where(Case.id == case.id)
    return errors


def check_questions(raw: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    questions, errors = [], {}
    for index in range(1, MAX_QUESTIONS + 1):
        text = _first(raw, f"question_{index}")
        if len(text) > MAX_QUESTION_CHARS:
            errors[f"question_{index}"] = f"Use at most {MAX_QUESTION_CHARS} characters."
        if text:
            questions.append(text)
    if not questions and not errors:
        errors["question_1"] = "Write at least one question for the doctor."
    return questions, errors


async def save_questions(case: Case, raw: dict[str, list[str]]) -> dict[str, str]:
    await autosave(case, "questions", raw)
    questions, errors = check_questions(raw)
    if not errors:
        await Case.update({Case.questions: json.dumps(questions)}).where(Case.id == case.id)
    return errors


async def save_preferred_doctor(
    case: Case, raw: dict[str, list[str]], away: dict[int, date] | None = None
) -> dict[str, str]:
    """The patient's preferred doctor, one of `doctors_for` the specialty; not one of `away`
    (doctor id → the last day they are away: core/assignment decides who is)."""
    await autosave(case, "doctor", raw)
    choice = _first(raw, "preferred_doctor")
    doctor_id = None
    if choice not in ("", "none"):
        doctor = next((d for d in await doctors_for(case.specialty) if str(d.uid) == choice), None)
        if doctor is None:
            return {"preferred_doctor": "Choose a doctor from the list, or no preference."}
        if away and doctor.id in away:
            until = away[doctor.id].strftime("%-d %B")
            return {
                "preferred_doctor": f"{doctor.full_name} is away until {until}. Choose another "
                "doctor, or “No preference”."
            }
        doctor_id = doctor.id
    elif choice == "":
        return {"preferred_doctor": "Choose a doctor, or “No preference”."}
    await Case.update({Case.preferred_doctor: doctor_id}).where(Case.id == case.id)
    return {}


def incomplete_steps(
    case: Case, patient: User, specialty: Specialty, plugins: PluginHost
) -> dict[str, dict[str, str]]:
    """Every step's problems, from the saved entries (what submission would refuse)."""
    draft = draft_of(case)
    problems: dict[str, dict[str, str]] = {}
    _, errors = check_subject(patient, draft.get("subject", {}))
    if errors:
        problems["subject"] = errors
    _, errors = check_intake(case, specialty, plugins, draft.get("intake", {}))
    if errors:
        problems["intake"] = errors
    _, errors = check_questions(draft.get("questions", {}))
    if errors:
        problems["questions"] = errors
    if "preferred_doctor" not in draft.get("doctor", {}):
        problems["doctor"] = {"preferred_doctor": "Choose a doctor, or “No preference”."}
    return problems


async def submit(
    case: Case, patient: User, specialty: Specialty, plugins: PluginHost, *, ip: str | None
) -> dict[str, dict[str, str]]:
    """Submit a complete draft; returns the problems per step instead when it is not complete."""
    problems = incomplete_steps(case, patient, specialty, plugins)
    if problems:
        return problems
    draft = draft_of(case)
    # Re-save every step from the draft so what is stored is exactly what was reviewed.
    await save_subject(case, patient, draft["subject"])
    await save_intake(case, specialty, plugins, draft["intake"])
    await save_questions(case, draft["questions"])
    await save_preferred_doctor(case, draft["doctor"])
    async with db.transaction():  # payments fixes the fee in the same step (or refuses)
        await transition(case, "submit", patient, ip=ip)
        await context.current().events.publish(CaseSubmitted(case.id, patient))
    return {}


# The state machine ------------------------------------------------------------------------------


async def _event(
    case: Case, actor: User | None, action: str, source: str, target: str, note: str
) -> None:
    await CaseEvent.insert(
        CaseEvent(
            case=case.id,
            actor=actor.id if actor else None,
            action=action,
            from_status=source,
            to_status=target,
            note=note,
        )
    )


async def note_event(case_id: int, action: str, note: str, actor: User | None = None) -> None:
    """A timeline entry for a step that leaves the state as it is (a payment, a refund, an
    upload). Call it inside the transaction of the change it describes; `note` is the service's
    own plain sentence, never free text, never anything medical."""
    await CaseEvent.insert(
        CaseEvent(case=case_id, actor=actor.id if actor else None, action=action, note=note)
    )


EVENT_NOTES = {
    "submit": "Request submitted",
    "cancel": "Request cancelled",
    "receive": "Received for review",
    "decline": "Declined",
    "offer": "Offered to a specialist",
    "accept": "Accepted by a specialist",
    "decline_offer": "The specialist offered the case could not take it",
    "offer_expired": "The specialist offered the case did not answer in time",
    "hand_back": "Handed back by the specialist",
    "reassign": "Moved to another specialist",
    "start_review": "Review started",
    "request_info": "The specialist asked for more information",
    "provide_info": "Information sent to the specialist",
    "publish_report": "Report ready",
    "close": "Case closed",
}


async def transition(
    case: Case,
    action: str,
    actor: User | None,
    *,
    ip: str | None,
) -> Case:
    """Apply `action` if the actor may and the case is in a state that allows it.

    `actor=None` is the system itself (e.g. payment and records complete → received).
    The state is re-read and changed with a conditional UPDATE, so two concurrent actions on
    one case cannot both succeed.
    """
    rule = states.TRANSITIONS.get(action)
    if rule is None:
        raise TransitionRefused("That action does not exist.")
    role = actor.role if actor else states.SYSTEM
    if role not in rule.roles:
        raise TransitionRefused("Your account cannot do this.")
    # owner_only binds patients; staff may end a wait for them (provide_info, core/completeness).
    if rule.owner_only and (actor is None or (role == PATIENT and case.patient != actor.id)):
        raise CaseNotFound
    if rule.assigned_only and (actor is None or case.assigned_doctor != actor.id):
        raise CaseNotFound
    async with db.transaction():
        changed = (
            await Case.update(
                {Case.status: rule.target, Case.updated_at: clock.now()}
                | ({Case.submitted_at: clock.now()} if action == "submit" else {})
            )
            .where((Case.id == case.id) & Case.status.is_in(list(rule.sources)))
            .returning(Case.id)
        )
        if not changed:
            current = await Case.select(Case.status).where(Case.id == case.id).first()
            label = states.PATIENT_STATUS.get(current["status"] if current else "", ("",))[0]
            raise TransitionRefused(f"This is not possible while the case is “{label}”.")
        await _event(case, actor, action, case.status, rule.target, EVENT_NOTES[action])
        await audit.record_about(
            f"case.{action}",
            case,
            case=case,
            actor=actor,
            ip=ip,
            details={"from": case.status, "to": rule.target},
        )
    case.status = rule.target
    return case


async def set_doctor(case: Case, doctor_id: int | None) -> None:
    """Who the case is with (offered to or accepted by; None: nobody). Only core/assignment
    calls it, in the transaction of the state change: the doctor it is taken from loses access
    to the case at once, on every page (documents.may_read reads this)."""
    await Case.update({Case.assigned_doctor: doctor_id}).where(Case.id == case.id)
    case.assigned_doctor = doctor_id


async def set_subspecialty(case: Case, value: str) -> None:
    """The subspecialty the case needs (its plugin's suggestion when it was received)."""
    await Case.update({Case.subspecialty: value}).where(Case.id == case.id)
    case.subspecialty = value


# The patient's relationship to the person the opinion is for, as staff read it.
RELATIONSHIP_TO_STAFF = {
    "parent": "Parent",
    "legal_guardian": "Legal guardian",
    "carer": "Carer, with their permission",
}


@dataclass(frozen=True)
class SubjectInWords:
    """Who the opinion is for, in words, for the doctor and staff: the person, and for someone
    in the patient's care the account holder who asked and how they are related."""

    name: str
    birth_date: date | None
    sex: str
    guardian: str  # "" when the patient asks for themself
    relationship: str


async def subject_of(case: Case) -> SubjectInWords:
    patient = await User.select(User.full_name).where(User.id == case.patient).first()
    holder = patient["full_name"] if patient else ""
    dependant = case.subject_kind == "dependant"
    return SubjectInWords(
        name=case.subject_name if dependant else holder,
        birth_date=case.subject_birth_date,
        sex=dict(SEXES).get(case.subject_sex, ""),
        guardian=holder if dependant else "",
        relationship=RELATIONSHIP_TO_STAFF.get(case.subject_relationship, "") if dependant else "",
    )


# How lists show a due state: the words, and the badge's class (static/app.css).
PAUSED = "paused"
DUE_WORDS = {
    "at_risk": ("At risk", "due-at-risk"),
    "overdue": ("Overdue", "due-overdue"),
    PAUSED: ("Paused: waiting", "due-paused"),
}


def due_state(case: Case | CaseLine, today: date | None = None) -> str:
    """How a case's due date stands today ("overdue", "at_risk", "paused" or ""): see
    core/cases/turnaround.py. Only while the clock runs (received, until the report), and not
    while the case waits for the patient or materials (paused: the due date will move)."""
    if case.status not in states.ON_THE_CLOCK or case.due_on is None:
        return ""
    if case.waiting_since is not None:
        return PAUSED
    settings = context.settings()
    on = today or clock.local_date(clock.now(), settings.time_zone)
    return turnaround.due_state(
        on, case.due_on, country=settings.holiday_country, weekend=settings.weekend_days
    )

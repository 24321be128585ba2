"""What a case still needs from outside: records asked of the patient or their doctor, the
reviewing doctor's questions to the patient, and physical materials (slides, blocks, a CD) that
arrive by post.

Asking makes the case wait (core/cases/pauses.py): its clock stands still and records may be
added in any state before the report. The case stops waiting when its last open request ends —
the patient replies, a coordinator marks it received or withdraws it, or the material asked for
arrives — and its due date then moves by the working days it waited.

The reviewing doctor's questions are requests too (`asked_by_role` "doctor", asked of the
patient): asking moves the case to awaiting_info (starting the review first if need be), the
patient must answer in words, and when the last open request ends the case goes back to
in_review. Their rounds, oldest first, are the case's thread of questions and answers.

A physical material's arrival is a fact for cases (`MaterialsChanged`): a submitted case whose
specialty requires that material is received only once it is in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from core import clock, context, db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases import pauses, reception, states
from core.cases import service as cases
from core.cases.service import CaseNotFound, note_event
from core.cases.tables import Case
from core.completeness.tables import MaterialArrival, RecordsRequest
from core.documents import links
from core.errors import InvalidInput, NotFound, Refused
from core.facts import MaterialsChanged
from core.ids import parse_uuid
from core.notifications import service as notifications
from core.roles import ADMIN, COORDINATOR, DOCTOR
from core.specialty import PhysicalMaterial, Specialty

MAX_MESSAGE_CHARS = 2000
MAX_ANSWER_CHARS = 2000
MAX_COUNT = 500
MAX_IDENTIFIERS_CHARS = 500
MAX_NOTE_CHARS = 1000
MAX_COURIER_REF_CHARS = 100

OPEN, ANSWERED, RECEIVED, WITHDRAWN = "open", "answered", "received", "withdrawn"
PATIENT, PROVIDER = "patient", "provider"
# States in which the reviewing doctor may ask the patient: accepted, until the report.
QUESTION_STATES = (states.ASSIGNED, states.IN_REVIEW, states.AWAITING_INFO)
STATUS_WORDS = {
    OPEN: "Waiting",
    ANSWERED: "Answered",
    RECEIVED: "Received",
    WITHDRAWN: "Withdrawn",
}


class RequestNotFound(NotFound):
    """No such open request on this case."""


def _staff(user: User) -> None:
    if user.role not in (COORDINATOR, ADMIN):
        raise Refused("Only coordinators ask for records and record materials.", status=403)


def may_ask(case: Case) -> bool:
    """Requests are possible from submission until the report."""
    return case.status in states.BEFORE_REPORT


# Requests for records -------------------------------------------------------------------------


def check_request(
    values: dict[str, str],
    specialty: Specialty | None,
    *,
    empty: str = "Say what is needed and why; the patient reads this.",
) -> tuple[dict[str, str], dict[str, str]]:
    """The request form, cleaned: (message, audience, provider_email, material), errors.
    `empty` is what to say when there is no message."""
    errors: dict[str, str] = {}
    message = (values.get("message") or "").strip()
    if not message:
        errors["message"] = empty
    elif len(message) > MAX_MESSAGE_CHARS:
        errors["message"] = f"Use at most {MAX_MESSAGE_CHARS} characters."
    audience = values.get("audience") or PATIENT
    if audience not in (PATIENT, PROVIDER):
        errors["audience"] = "Choose who is asked."
    email = (values.get("provider_email") or "").strip()
    if audience == PROVIDER:
        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError:
            errors["provider_email"] = "Give the doctor's email address, like name@example.com."
    else:
        email = ""
    material = values.get("by_post") or ""
    known = {item.key for item in specialty.physical_materials} if specialty else set()
    if material and material not in known:
        errors["by_post"] = "Choose one of the materials this specialty takes, or none."
    if material and audience == PROVIDER:
        errors["by_post"] = "Materials are asked of the patient, who arranges the posting."
    cleaned = {"message": message, "audience": audience, "provider_email": email}
    return cleaned | {"material": material}, errors


async def ask(
    case: Case, staff: User, values: dict[str, str], specialty: Specialty | None, *, ip: str | None
) -> RecordsRequest:
    """A coordinator asks for more: the case waits, the patient (and, for a provider request,
    their doctor, with an upload link) is emailed; nothing medical in the emails."""
    _staff(staff)
    cleaned, errors = check_request(values, specialty)
    if errors:
        raise InvalidInput(errors)
    if not may_ask(case):
        raise Refused("Records can be asked for only between submission and the report.")
    material = cleaned["material"]
    reason = pauses.MATERIALS if material else cleaned["audience"]
    async with db.transaction():
        current = await reception.locked_case(case.id)
        if current is None or current.status not in states.BEFORE_REPORT:
            raise Refused("Records can be asked for only between submission and the report.")
        await pauses.start_waiting(case.id, reason)
        request = RecordsRequest(
            uid=uuid.uuid4(),
            case=case.id,
            asked_by=staff.id,
            asked_by_role=staff.role,
            asked_at=clock.now(),
            message=cleaned["message"],
            audience=cleaned["audience"],
            provider_email=cleaned["provider_email"],
            material=material,
            status=OPEN,
        )
        token = ""
        if cleaned["audience"] == PROVIDER:
            link, token = await links.create_link_for_request(
                case, staff, note=f"Asked by the hospital for {cleaned['provider_email']}", ip=ip
            )
            request.link = link.id
        await RecordsRequest.insert(request)
        what = _material_label(specialty, material) if material else ""
        await note_event(
            case.id,
            "records_requested",
            f"We asked for {what[0].lower() + what[1:]}"
            if what
            else (
                "We asked your doctor to send records"
                if cleaned["audience"] == PROVIDER
                else "We asked you for more records"
            ),
            staff,
        )
        await audit.record_about(
            "records_request.ask",
            request,
            case=case,
            actor=staff,
            ip=ip,
            details={"audience": cleaned["audience"], "material": material},
        )
        patient = await User.objects().where(User.id == case.patient).first()
        settings = context.settings()
        await notifications.enqueue(
            to=patient.email,
            template="records_requested",
            context={
                "reference": case.reference,
                "case_url": reception.case_url(case),
                "provider": cleaned["audience"] == PROVIDER,
                "material": bool(material),
            },
        )
        if token:
            await notifications.enqueue(
                to=cleaned["provider_email"],
                template="records_requested_provider",
                context={
                    "reference": case.reference,
                    "upload_url": links.link_url(settings.base_url, token),
                    "days": links.DAYS_DEFAULT,
                    "contact_email": settings.contact_email,
                },
            )
    case.waiting_since = case.waiting_since or clock.now()
    return request


# The reviewing doctor's questions ------------------------------------------------------------


def may_question(case: Case) -> bool:
    """The doctor a case is with may ask the patient once they accepted it, until the report."""
    return case.status in QUESTION_STATES


def check_question(
    values: dict[str, str], specialty: Specialty | None
) -> tuple[dict[str, str], dict[str, str]]:
    """The doctor's question form, cleaned as a coordinator's request of the patient: always
    the patient (never the provider link), optionally a physical material of the specialty."""
    return check_request(
        {**values, "audience": PATIENT, "provider_email": ""},
        specialty,
        empty="Write your question; the patient reads it on their case page.",
    )


async def ask_question(
    case: Case, doctor: User, values: dict[str, str], specialty: Specialty | None, *, ip: str | None
) -> RecordsRequest:
    """The doctor the case is with asks the patient a question (records to add, or a material
    to post, may be named in it): in one transaction the review starts if it had not, the case
    becomes awaiting_info and waits with its clock paused, and the patient is emailed that
    there is a question — never the question itself."""
    if doctor.role != DOCTOR or case.assigned_doctor != doctor.id:
        raise CaseNotFound
    cleaned, errors = check_question(values, specialty)
    if errors:
        raise InvalidInput(errors)
    not_now = "You can ask the patient once you have accepted the case, until the report."
    if not may_question(case):
        raise Refused(not_now)
    material = cleaned["material"]
    async with db.transaction():
        current = await reception.locked_case(case.id)
        if current is None or current.assigned_doctor != doctor.id:
            raise CaseNotFound
        if current.status == states.ASSIGNED:  # asking is where the review starts
            await cases.transition(current, "start_review", doctor, ip=ip)
        if current.status == states.IN_REVIEW:
            await cases.transition(current, "request_info", doctor, ip=ip)
        elif current.status == states.AWAITING_INFO:  # another question while one is open
            await note_event(
                case.id, "question_asked", "The specialist asked another question", doctor
            )
        else:
            raise Refused(not_now)
        await pauses.start_waiting(case.id, pauses.MATERIALS if material else pauses.PATIENT)
        request = RecordsRequest(
            uid=uuid.uuid4(),
            case=case.id,
            asked_by=doctor.id,
            asked_by_role=DOCTOR,
            asked_at=clock.now(),
            message=cleaned["message"],
            audience=PATIENT,
            provider_email="",
            material=material,
            status=OPEN,
        )
        await RecordsRequest.insert(request)
        await audit.record_about(
            "records_request.ask",
            request,
            case=case,
            actor=doctor,
            ip=ip,
            details={"audience": PATIENT, "material": material, "asked_by_role": DOCTOR},
        )
        patient = await User.select(User.email).where(User.id == case.patient).first()
        await notifications.enqueue(
            to=patient["email"],
            template="question_asked",
            context={"reference": case.reference, "case_url": reception.case_url(case)},
        )
    case.status = current.status
    case.waiting_since = case.waiting_since or clock.now()
    return request


def _doctor_case_url(case: Case) -> str:
    return f"{context.settings().base_url}/doctor/cases/{case.uid}/review#questions"


async def _tell_doctor(case: Case, answered: bool) -> None:
    """The doctor the case is with hears that their question was answered (or closed by a
    coordinator): the reference and a link only."""
    if case.assigned_doctor is None:
        return
    doctor = await User.select(User.email).where(User.id == case.assigned_doctor).first()
    if doctor is None:
        return
    await notifications.enqueue(
        to=doctor["email"],
        template="question_answered" if answered else "question_closed",
        context={"reference": case.reference, "link": _doctor_case_url(case)},
    )


def _material_label(specialty: Specialty | None, key: str) -> str:
    if specialty is None:
        return key
    return next((m.label for m in specialty.physical_materials if m.key == key), key)


async def _open_request(case: Case, uid: str) -> RecordsRequest:
    parsed = parse_uuid(uid)
    if parsed is None:
        raise RequestNotFound
    found = (
        await RecordsRequest.objects()
        .where(
            (RecordsRequest.uid == parsed)
            & (RecordsRequest.case == case.id)
            & (RecordsRequest.status == OPEN)
        )
        .first()
    )
    if found is None:
        raise RequestNotFound
    return found


async def _end(
    request: RecordsRequest, status: str, by: User, answer: str = "", *, ip: str | None = None
) -> bool:
    """End one open request (conditional: ending it twice ends it once); the case stops waiting
    when it was the last, and a case awaiting the patient's answers goes back to review (by
    `by`: the patient, or the coordinator who closed it). The doctor hears of the end of their
    question. False when it had ended already."""
    ended = (
        await RecordsRequest.update(
            {
                RecordsRequest.status: status,
                RecordsRequest.answer: answer,
                RecordsRequest.closed_at: clock.now(),
                RecordsRequest.closed_by: by.id,
            }
        )
        .where((RecordsRequest.id == request.id) & (RecordsRequest.status == OPEN))
        .returning(RecordsRequest.id)
    )
    if not ended:
        return False
    still_open = await RecordsRequest.exists().where(
        (RecordsRequest.case == request.case) & (RecordsRequest.status == OPEN)
    )
    if not still_open:
        await pauses.stop_waiting(request.case)
    case = await reception.locked_case(request.case)
    if case is None:
        return True
    if not still_open and case.status == states.AWAITING_INFO:
        await cases.transition(case, "provide_info", by, ip=ip)
    if request.asked_by_role == DOCTOR:
        await _tell_doctor(case, answered=status == ANSWERED)
    return True


async def answer(
    case: Case, patient: User, request_uid: str, text: str, *, ip: str | None
) -> RecordsRequest:
    """The patient says they have sent what was asked (with a few words if they like), or
    answers the reviewing doctor's question (words required): the request is answered and,
    when it was the last, the clock runs again and the review goes on."""
    if case.patient != patient.id:
        raise CaseNotFound
    text = text.strip()
    if len(text) > MAX_ANSWER_CHARS:
        raise InvalidInput({"answer": f"Use at most {MAX_ANSWER_CHARS} characters."})
    async with db.transaction():
        await reception.locked_case(case.id)
        request = await _open_request(case, request_uid)
        if request.material:
            raise Refused("We will tell you when the package arrives; nothing to send here.")
        question = request.asked_by_role == DOCTOR
        if question and not text:
            raise InvalidInput({"answer": "Write your answer; the specialist reads it."})
        if not await _end(request, ANSWERED, patient, text, ip=ip):
            raise RequestNotFound
        note = "You answered the specialist's question" if question else "You told us you sent it"
        await note_event(case.id, "records_request_answered", note, patient)
        await audit.record_about("records_request.answer", request, case=case, actor=patient, ip=ip)
    return request


async def close(
    case: Case, staff: User, request_uid: str, outcome: str, *, ip: str | None
) -> RecordsRequest:
    """A coordinator ends a request: what was asked came (`received`), or it is no longer
    needed (`withdrawn`)."""
    _staff(staff)
    if outcome not in (RECEIVED, WITHDRAWN):
        raise InvalidInput({"outcome": "Choose received or withdrawn."})
    async with db.transaction():
        await reception.locked_case(case.id)
        request = await _open_request(case, request_uid)
        if not await _end(request, outcome, staff, ip=ip):
            raise RequestNotFound
        note = "We have what we asked for" if outcome == RECEIVED else "We no longer need it"
        await note_event(case.id, f"records_request_{outcome}", note, staff)
        await audit.record_about(
            f"records_request.{outcome}", request, case=case, actor=staff, ip=ip
        )
    return request


# How a round of questions that a coordinator ended reads (an answered one shows the answer).
ENDED_WORDS = {
    RECEIVED: "Closed by the hospital: what was asked for has arrived.",
    WITHDRAWN: "Closed by the hospital: no longer needed.",
}


@dataclass(frozen=True)
class RequestLine:
    """One request as the pages show it; a doctor's question is also a round of the thread."""

    request: RecordsRequest
    asked_by: str
    status_words: str
    material: str  # the material's label, "" for records

    @property
    def open(self) -> bool:
        return self.request.status == OPEN

    @property
    def answerable(self) -> bool:
        """The patient may reply "sent" (materials are answered by their arrival)."""
        return self.open and not self.request.material

    @property
    def from_doctor(self) -> bool:
        """The reviewing doctor's question (the patient must answer it in words)."""
        return self.request.asked_by_role == DOCTOR

    @property
    def asker_role(self) -> str:
        return "Reviewing specialist" if self.from_doctor else "Coordinator"

    @property
    def asked_at(self) -> datetime:
        return self.request.asked_at

    @property
    def message(self) -> str:
        return self.request.message

    @property
    def answer(self) -> str:
        return self.request.answer

    @property
    def answered(self) -> bool:
        return self.request.status == ANSWERED

    @property
    def answered_at(self) -> datetime | None:
        """When the patient answered (None while open, or when a coordinator ended it)."""
        return self.request.closed_at if self.answered else None

    @property
    def ended_words(self) -> str:
        """How a round a coordinator (or an arrival) ended reads; "" otherwise."""
        return ENDED_WORDS.get(self.request.status, "")


class Requests(list[RequestLine]):
    """requests_of's lines (open first, then newest), with the two views the case pages show
    apart: the coordinators' requests for records, and the doctor's questions as a thread."""

    @property
    def records(self) -> list[RequestLine]:
        return [line for line in self if not line.from_doctor]

    @property
    def thread(self) -> list[RequestLine]:
        """The reviewing doctor's questions and the patient's answers, oldest first."""
        return sorted((line for line in self if line.from_doctor), key=lambda line: line.request.id)


async def _lines(rows: list[RecordsRequest], specialty: Specialty | None) -> list[RequestLine]:
    ids = {row.asked_by for row in rows if row.asked_by}
    names = {
        row["id"]: row["full_name"]
        for row in (
            await User.select(User.id, User.full_name).where(User.id.is_in(list(ids)))
            if ids
            else []
        )
    }
    return [
        RequestLine(
            request=row,
            asked_by=names.get(
                row.asked_by, "The specialist" if row.asked_by_role == DOCTOR else "A coordinator"
            ),
            status_words=STATUS_WORDS.get(row.status, row.status),
            material=_material_label(specialty, row.material) if row.material else "",
        )
        for row in rows
    ]


async def requests_of(case: Case, specialty: Specialty | None) -> Requests:
    """The case's requests, open ones first, then newest first (`.records`, `.thread`)."""
    rows = (
        await RecordsRequest.objects()
        .where(RecordsRequest.case == case.id)
        .order_by(RecordsRequest.id, ascending=False)
    )
    lines = await _lines(rows, specialty)
    return Requests(sorted(lines, key=lambda line: not line.open))


@dataclass(frozen=True)
class Thread:
    """The doctor's view of their questions to the patient: the rounds, oldest first, whether
    they may ask now, and the physical materials they may ask for."""

    rounds: list[RequestLine]
    can_ask: bool
    materials: tuple[PhysicalMaterial, ...]


async def thread_of(case: Case, specialty: Specialty | None) -> Thread:
    """The case's doctor's questions and the patient's answers, oldest first."""
    rows = (
        await RecordsRequest.objects()
        .where((RecordsRequest.case == case.id) & (RecordsRequest.asked_by_role == DOCTOR))
        .order_by(RecordsRequest.id)
    )
    return Thread(
        rounds=await _lines(rows, specialty),
        can_ask=may_question(case),
        materials=specialty.physical_materials if specialty else (),
    )


# Physical materials -------------------------------------------------------------------------


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def check_arrival(
    values: dict[str, str], specialty: Specialty | None, case: Case
) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    material = values.get("material") or ""
    if specialty is None or material not in {m.key for m in specialty.physical_materials}:
        errors["material"] = "Choose what arrived."
    count = _int(values.get("count") or "")
    if count is None or not 1 <= count <= MAX_COUNT:
        errors["count"] = f"Give how many arrived, from 1 to {MAX_COUNT}."
    identifiers = " ".join((values.get("identifiers") or "").split())
    if not identifiers:
        errors["identifiers"] = "Copy the labels, for example “S24-1234 A1–A3”."
    elif len(identifiers) > MAX_IDENTIFIERS_CHARS:
        errors["identifiers"] = f"Use at most {MAX_IDENTIFIERS_CHARS} characters."
    note = (values.get("note") or "").strip()
    if len(note) > MAX_NOTE_CHARS:
        errors["note"] = f"Use at most {MAX_NOTE_CHARS} characters."
    raw_day = values.get("arrived_on") or ""
    day = _day(raw_day) if raw_day.strip() else cases.today()
    submitted = (
        clock.local_date(case.submitted_at, context.settings().time_zone)
        if case.submitted_at
        else None
    )
    if day is None:
        errors["arrived_on"] = "Give a date, for example 2026-12-07."
    elif day > cases.today():
        errors["arrived_on"] = "The day it arrived cannot be in the future."
    elif submitted and day < submitted:
        errors["arrived_on"] = "The day it arrived cannot be before the request was submitted."
    cleaned = {
        "material": material,
        "count": count,
        "identifiers": identifiers,
        "note": note,
        "arrived_on": day,
    }
    return cleaned, errors


async def _arrived_keys(case_id: int) -> frozenset[str]:
    rows = await MaterialArrival.select(MaterialArrival.material).where(
        MaterialArrival.case == case_id
    )
    return frozenset(row["material"] for row in rows)


async def record_arrival(
    case: Case, staff: User, values: dict[str, str], specialty: Specialty | None, *, ip: str | None
) -> MaterialArrival:
    """A coordinator records a package that arrived (what, how many, the labels): open requests
    for that material end, and cases hears which materials are in (it may now be received)."""
    _staff(staff)
    cleaned, errors = check_arrival(values, specialty, case)
    if errors:
        raise InvalidInput(errors)
    if not may_ask(case):
        raise Refused("Materials can be recorded only between submission and the report.")
    async with db.transaction():
        current = await reception.locked_case(case.id)
        if current is None or current.status not in states.BEFORE_REPORT:
            raise Refused("Materials can be recorded only between submission and the report.")
        arrival = MaterialArrival(
            uid=uuid.uuid4(),
            case=case.id,
            material=cleaned["material"],
            count=cleaned["count"],
            identifiers=cleaned["identifiers"],
            note=cleaned["note"],
            arrived_at=clock.now(),
            arrived_on=cleaned["arrived_on"],
            recorded_by=staff.id,
        )
        await MaterialArrival.insert(arrival)
        label = _material_label(specialty, arrival.material)
        await note_event(case.id, "material_arrived", f"Arrived by post: {label}", staff)
        await audit.record_about(
            "material.arrive",
            arrival,
            case=case,
            actor=staff,
            ip=ip,
            details={"material": arrival.material, "count": arrival.count},
        )
        waiting_for_it = await RecordsRequest.objects().where(
            (RecordsRequest.case == case.id)
            & (RecordsRequest.status == OPEN)
            & (RecordsRequest.material == arrival.material)
        )
        for request in waiting_for_it:
            await _end(request, RECEIVED, staff, ip=ip)
        await context.current().events.publish(
            MaterialsChanged(case.id, await _arrived_keys(case.id))
        )
    return arrival


def check_return(values: dict[str, str], arrival: MaterialArrival) -> tuple[dict, dict[str, str]]:
    errors: dict[str, str] = {}
    raw = values.get("returned_on") or ""
    day = _day(raw) if raw.strip() else cases.today()
    if day is None:
        errors["returned_on"] = "Give a date, for example 2026-12-07."
    elif day > cases.today():
        errors["returned_on"] = "The day it was sent back cannot be in the future."
    elif day < arrival.arrived_on:
        errors["returned_on"] = "It cannot go back before it arrived."
    courier_ref = " ".join((values.get("courier_ref") or "").split())
    if not courier_ref:
        errors["courier_ref"] = "Give the courier's tracking reference."
    elif len(courier_ref) > MAX_COURIER_REF_CHARS:
        errors["courier_ref"] = f"Use at most {MAX_COURIER_REF_CHARS} characters."
    return {"returned_on": day, "courier_ref": courier_ref}, errors


async def record_return(
    case: Case, staff: User, arrival_uid: str, values: dict[str, str], *, ip: str | None
) -> MaterialArrival:
    """A coordinator records that a package went back to its sender (date, courier reference).
    Once only."""
    _staff(staff)
    parsed = parse_uuid(arrival_uid)
    arrival = (
        await MaterialArrival.objects()
        .where((MaterialArrival.uid == parsed) & (MaterialArrival.case == case.id))
        .first()
        if parsed
        else None
    )
    if arrival is None:
        raise RequestNotFound
    cleaned, errors = check_return(values, arrival)
    if errors:
        raise InvalidInput(errors)
    async with db.transaction():
        done = (
            await MaterialArrival.update(
                {
                    MaterialArrival.returned_on: cleaned["returned_on"],
                    MaterialArrival.courier_ref: cleaned["courier_ref"],
                    MaterialArrival.returned_by: staff.id,
                }
            )
            .where((MaterialArrival.id == arrival.id) & MaterialArrival.returned_on.is_null())
            .returning(MaterialArrival.id)
        )
        if not done:
            raise Refused("Its return is recorded already.")
        await note_event(case.id, "material_returned", "Materials sent back to the sender", staff)
        await audit.record_about(
            "material.return",
            arrival,
            case=case,
            actor=staff,
            ip=ip,
            details={"courier_ref": cleaned["courier_ref"]},
        )
    arrival.returned_on, arrival.courier_ref = cleaned["returned_on"], cleaned["courier_ref"]
    return arrival


@dataclass(frozen=True)
class MaterialLine:
    """One physical material as the case pages show it: whether this case needs it, and the
    packages that came."""

    item: PhysicalMaterial
    asked: bool  # applies to this case (its intake answers) or was asked for
    arrivals: list[MaterialArrival] = field(default_factory=list)

    @property
    def required(self) -> bool:
        return self.asked and self.item.required

    @property
    def arrived(self) -> bool:
        return bool(self.arrivals)

    @property
    def words(self) -> str:
        if self.arrivals:
            return "Arrived"
        if self.required:
            return "Needed before the review can start"
        return "Asked for; the review can start without it" if self.asked else "Not asked for"


@dataclass(frozen=True)
class Materials:
    lines: list[MaterialLine]
    address: list[str]  # where to send them, line by line

    @property
    def asked(self) -> list[MaterialLine]:
        return [line for line in self.lines if line.asked or line.arrived]

    @property
    def awaited(self) -> list[MaterialLine]:
        return [line for line in self.asked if not line.arrived]


async def materials_of(case: Case, specialty: Specialty | None) -> Materials:
    """The specialty's physical materials for this case, with what arrived (both pages)."""
    address = list(context.settings().materials_address)
    if specialty is None or not specialty.physical_materials:
        return Materials([], address)
    applying = {item.key for item in reception.materials_asked(case, specialty)}
    arrivals = (
        await MaterialArrival.objects()
        .where(MaterialArrival.case == case.id)
        .order_by(MaterialArrival.id)
    )
    requested = {
        row["material"]
        for row in await RecordsRequest.select(RecordsRequest.material).where(
            (RecordsRequest.case == case.id) & (RecordsRequest.material != "")
        )
    }
    lines = [
        MaterialLine(
            item=item,
            asked=item.key in applying or item.key in requested,
            arrivals=[a for a in arrivals if a.material == item.key],
        )
        for item in specialty.physical_materials
    ]
    return Materials(lines, address)

"""When a case is received, and what closing it early means: rules owned by cases.

A submitted case is **received** once its fee is paid and every record its specialty requires
is in. Payments and documents sit above cases and tell it those facts (core/facts.py); cases
keeps them on the case row (`paid_at`, `records_in`) and decides here, inside the teller's
transaction, under a lock on the case row: a payment and the last upload arriving together each
wait for the other's commit, so whichever runs second sees both.

Receiving starts the turnaround clock (due in N working days, core/cases/turnaround.py) and
emails the patient. Declining (staff) and cancelling (the patient) end a case before review;
payments hears it (`CaseClosedEarly`) and refunds after the commit.
"""

from __future__ import annotations

import json

from core import clock, context, db
from core.accounts.tables import User
from core.cases import states
from core.cases.service import CaseNotFound, answers_of, transition
from core.cases.tables import Case
from core.cases.turnaround import add_working_days
from core.errors import InvalidInput
from core.events import Events
from core.facts import (
    CaseClosedEarly,
    CaseReceived,
    FeePaidChanged,
    MaterialsChanged,
    RecordsChanged,
)
from core.notifications import service as notifications
from core.specialty import PhysicalMaterial, Specialty

MAX_REASON_CHARS = 2000


def records_in(case: Case) -> set[str]:
    value = case.records_in
    return set(json.loads(value) if isinstance(value, str) else value or [])


def materials_in(case: Case) -> set[str]:
    value = case.materials_in
    return set(json.loads(value) if isinstance(value, str) else value or [])


def materials_asked(case: Case, specialty: Specialty | None) -> tuple[PhysicalMaterial, ...]:
    """The specialty's physical materials that apply to this case (its intake answers)."""
    if specialty is None:
        return ()
    return specialty.materials_for(answers_of(case).values)


def missing_uploads(case: Case, specialty: Specialty | None) -> list[str]:
    """Labels of the specialty's required records that the case's uploads do not satisfy."""
    if specialty is None:
        return []
    present = records_in(case)
    return [
        item.label
        for item in specialty.required_documents
        if item.required and item.key not in present
    ]


def missing_materials(case: Case, specialty: Specialty | None) -> list[str]:
    """Labels of the required physical materials that apply to the case and have not arrived."""
    arrived = materials_in(case)
    return [
        item.label
        for item in materials_asked(case, specialty)
        if item.required and item.key not in arrived
    ]


def missing_records(case: Case, specialty: Specialty | None) -> list[str]:
    """Labels of what the case still needs before it is received: required records not
    uploaded, and required physical materials not arrived ("… (by post)")."""
    return missing_uploads(case, specialty) + [
        f"{label} (by post)" for label in missing_materials(case, specialty)
    ]


def case_url(case: Case) -> str:
    return f"{context.settings().base_url}/cases/{case.uid}"


async def locked_case(case_id: int) -> Case | None:
    """The case row, locked against every other writer of it until the transaction ends.

    PostgreSQL: SELECT … FOR NO KEY UPDATE (the lock an UPDATE of the row takes; it does not
    wait for transactions that only insert rows referencing the case). Under READ COMMITTED every
    later statement of the transaction then sees what the previous holder committed. SQLite:
    `db.transaction()` is IMMEDIATE, so writers already run one at a time.
    """
    query = Case.objects().where(Case.id == case_id)
    if db.is_postgres():
        query = query.lock_rows("NO KEY UPDATE")
    return await query.first()


async def on_fee_paid_changed(fact: FeePaidChanged) -> None:
    case = await locked_case(fact.case_id)
    if case is None:
        return
    paid_at = (case.paid_at or clock.now()) if fact.paid else None
    if paid_at != case.paid_at:
        await Case.update({Case.paid_at: paid_at}).where(Case.id == case.id)
        case.paid_at = paid_at
    await _receive_if_ready(case)


async def on_records_changed(fact: RecordsChanged) -> None:
    case = await locked_case(fact.case_id)
    if case is None:
        return
    items = sorted(fact.checklist_items)
    if items != sorted(records_in(case)):
        await Case.update({Case.records_in: json.dumps(items)}).where(Case.id == case.id)
        case.records_in = json.dumps(items)
    await _receive_if_ready(case)


async def on_materials_changed(fact: MaterialsChanged) -> None:
    case = await locked_case(fact.case_id)
    if case is None:
        return
    items = sorted(fact.materials)
    if items != sorted(materials_in(case)):
        await Case.update({Case.materials_in: json.dumps(items)}).where(Case.id == case.id)
        case.materials_in = json.dumps(items)
    await _receive_if_ready(case)


async def _receive_if_ready(case: Case) -> bool:
    """Move a submitted case (locked by the caller) to `received` when it is paid and its
    required records are in: due date, timeline, audit and the "received" email."""
    if case.status != states.SUBMITTED or case.paid_at is None:
        return False
    if missing_records(case, context.plugins().specialty(case.specialty)):
        return False
    settings = context.settings()
    received = clock.now()
    due = add_working_days(
        clock.local_date(received, settings.time_zone),
        settings.turnaround_working_days,
        country=settings.holiday_country,
        weekend=settings.weekend_days,
    )
    await transition(case, "receive", None, ip=None)
    await Case.update({Case.received_at: received, Case.due_on: due, Case.due_first: due}).where(
        Case.id == case.id
    )
    patient = await User.objects().where(User.id == case.patient).first()
    await notifications.enqueue(
        to=patient.email,
        template="case_received",
        context={
            "reference": case.reference,
            "due": due.strftime("%A %-d %B %Y"),
            "case_url": case_url(case),
        },
    )
    case.received_at, case.due_on, case.due_first = received, due, due
    await context.current().events.publish(CaseReceived(case.id))  # assignment routes it
    return True


async def decline(case: Case, staff: User, reason: str, *, ip: str | None) -> Case:
    """Decline a case before review (out of scope, an emergency, not enough material): the
    patient reads `reason`; what was paid is refunded (payments, after the commit)."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput({"reason": "Say why the case is declined; the patient reads this."})
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput({"reason": f"Use at most {MAX_REASON_CHARS} characters."})
    async with db.transaction():
        await transition(case, "decline", staff, ip=ip)  # refuses a case that moved on
        await Case.update({Case.decline_reason: reason}).where(Case.id == case.id)
        paid = await Case.exists().where((Case.id == case.id) & Case.paid_at.is_not_null())
        patient = await User.objects().where(User.id == case.patient).first()
        await notifications.enqueue(
            to=patient.email,
            template="case_declined",
            context={
                "reference": case.reference,
                "refund": paid,
                "case_url": case_url(case),
                "contact_email": context.settings().contact_email,
            },
        )
        await context.current().events.publish(CaseClosedEarly(case.id, staff, ip))
    case.decline_reason = reason
    return case


async def cancel(case: Case, patient: User, *, ip: str | None) -> Case:
    """The patient cancels their request (a draft, or submitted and not yet received); what was
    paid is refunded (payments, after the commit)."""
    if case.patient != patient.id:
        raise CaseNotFound
    async with db.transaction():
        await transition(case, "cancel", patient, ip=ip)
        await context.current().events.publish(CaseClosedEarly(case.id, patient, ip))
    return case


def subscribe(events: Events) -> None:
    events.subscribe(FeePaidChanged, on_fee_paid_changed)
    events.subscribe(RecordsChanged, on_records_changed)
    events.subscribe(MaterialsChanged, on_materials_changed)

from piccolo.columns import (
    JSON,
    UUID,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.accounts.tables import User


class Case(Table, tablename="case_case"):
    """A request for a second opinion, from draft to closed."""

    uid = UUID(unique=True, index=True)  # the only id in URLs
    reference = Varchar(length=20, unique=True, index=True)  # "SO-2026-00042", for people
    patient = ForeignKey(User, on_delete=OnDelete.restrict, index=True)  # the account holder
    specialty = Varchar(length=32, index=True)
    status = Varchar(length=20, default="draft", index=True)
    # Who the opinion is for: the account holder, or a child / person in their care.
    subject_kind = Varchar(length=12, default="")  # "" until chosen, "self", "dependant"
    subject_name = Varchar(length=200, default="")
    subject_birth_date = Date(null=True, default=None)
    subject_sex = Varchar(length=12, default="")
    subject_relationship = Varchar(length=40, default="")
    guardian_declared = Boolean(default=False)
    # Raw entries of every step as submitted (dict name → list of strings): drafts autosave
    # whatever was typed, so nothing is lost even before it passes validation.
    draft = JSON(default="{}")
    # Clean answers, fixed at submission: {"version": form version, "values": {...}}.
    intake = JSON(default="{}")
    questions = JSON(default="[]")
    preferred_doctor = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    # The doctor the case is with: offered to (status "offered") or accepted by. Only they
    # (besides coordinators) may read its records; set and cleared by core/assignment.
    assigned_doctor = ForeignKey(User, on_delete=OnDelete.restrict, null=True, default=None)
    # The subspecialty the specialty's plugin said the case needs when it was received.
    subspecialty = Varchar(length=32, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    submitted_at = Timestamptz(null=True, default=None)
    # Facts other domains report (core/facts.py) from which cases decides "received":
    paid_at = Timestamptz(null=True, default=None)  # the fee was paid (payments)
    records_in = JSON(default="[]")  # checklist items the records satisfy (documents)
    materials_in = JSON(default="[]")  # physical materials that have arrived (materials)
    received_at = Timestamptz(null=True, default=None)  # paid and records complete
    due_on = Date(null=True, default=None)  # received + the turnaround + the pauses
    due_first = Date(null=True, default=None)  # the due date set on receipt, before any pause
    # Since when the case waits for the patient (or their doctor, or materials asked after
    # submission): the clock is paused (CasePause) and records may be added in any open state.
    waiting_since = Timestamptz(null=True, default=None)
    # The turnaround alerts (core/cases/escalation.py), each sent once for a due date: the due
    # date the "at risk" and "overdue" alerts were sent for (a new due date may alert again),
    # and the later date the patient was told to expect their overdue report by.
    at_risk_alerted_for = Date(null=True, default=None)
    overdue_alerted_for = Date(null=True, default=None)
    late_expected_on = Date(null=True, default=None)
    decline_reason = Text(default="")  # the coordinator's words, shown to the patient


class CaseEvent(Table, tablename="case_event"):
    """The case timeline: one row per state change or notable step, shown to the patient."""

    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    at = Timestamptz(default=TimestamptzNow())
    actor = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    action = Varchar(length=40)
    from_status = Varchar(length=20, default="")
    to_status = Varchar(length=20, default="")
    note = Text(default="")  # shown on the timeline; written by the service, never free text


class CasePause(Table, tablename="case_pause"):
    """A stretch of time the turnaround clock stood still because the case waited for the
    patient, their doctor or physical materials (core/cases/pauses.py). An open pause has no
    `ended_at`; on resume the due date moves by `days_moved` working days."""

    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    reason = Varchar(length=12)  # "patient" (records or an answer) or "materials"
    started_at = Timestamptz(default=TimestamptzNow())
    ended_at = Timestamptz(null=True, default=None)
    days_moved = Integer(default=0)


class ReferenceCounter(Table, tablename="case_reference_counter"):
    """The last case number handed out per year; incremented atomically."""

    year = Integer(unique=True)
    last = Integer(default=0)


class CaseReader(Table, tablename="case_reader"):
    """A read-only grant to a case for someone who is not its patient, staff or doctor: a
    colleague the reviewing doctor asked for an opinion. It lasts until ended (at signing, or
    when the doctor withdraws it); every read is audited as any other."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    reader = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    granted_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    granted_at = Timestamptz(default=TimestamptzNow())
    ended_at = Timestamptz(null=True, default=None)

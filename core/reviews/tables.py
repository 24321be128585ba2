from piccolo.columns import (
    UUID,
    Boolean,
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
from core.cases.tables import Case


class ReviewDraft(Table, tablename="review_draft"):
    """What the doctor has typed so far, valid or not, seen by its author only. One per case
    and doctor (a unique index): a case handed to another doctor starts a new draft.

    `version` counts saves: a save names the version it was based on and is refused when the
    draft has moved on (another tab or window), so no text is overwritten unseen."""

    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    doctor = ForeignKey(User, on_delete=OnDelete.cascade)
    # The form as submitted: {name: [values]} (not "raw": that would hide Table.raw).
    entries = Text(default="{}")
    version = Integer(default=0)
    # The page (one load of the form in one tab) that saved last: its own later save is not a
    # conflict even if it names an older version (a button pressed while an autosave of the
    # same page was on its way).
    page = Varchar(length=32, default="")
    updated_at = Timestamptz(default=TimestamptzNow())


class SignedReview(Table, tablename="review_signed"):
    """A signed review: what the doctor concluded, in the words the form showed them, and who
    signed, with their registration, and when. Never updated or deleted: database triggers
    refuse it, as for the audit log. A later correction is a new row (`sequence`)."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.restrict, index=True)
    sequence = Integer(default=1)  # 1: the review; later versions come with the report's issue
    doctor = ForeignKey(User, on_delete=OnDelete.restrict)
    specialty = Varchar(length=32)
    form_version = Integer()
    # {"specialty": StoredAnswers JSON, "core": StoredAnswers JSON}: values and their words
    content = Text()
    content_sha256 = Varchar(length=64)
    agreement = Varchar(length=20)  # AGREES / DIFFERS_IN_DETAIL / DIFFERS, for statistics
    concordance = Varchar(length=40, default="")  # the specialty's own grade
    signer_name = Varchar(length=200)
    signer_title = Varchar(length=120, default="")
    registration_number = Varchar(length=60)
    registering_body = Varchar(length=120)
    signed_at = Timestamptz(default=TimestamptzNow())


class UrgentFinding(Table, tablename="review_urgent"):
    """A finding that needs action now (critical, or unexpected and significant), marked by the
    reviewing doctor: the coordinators are alerted at once and the patient's page asks them to
    call. One per case (a unique index): marking it again alerts nobody twice."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, unique=True)
    raised_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    raised_at = Timestamptz(default=TimestamptzNow())
    category = Varchar(length=20)  # "critical" | "unexpected"
    note = Text()  # clinical, for the care team; never in an email
    acknowledged_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    acknowledged_at = Timestamptz(null=True, default=None)


class Communication(Table, tablename="review_communication"):
    """Who was told of an urgent finding (or of the review), when, how, and whether they read it
    back: the communication log, part of the case and of its report."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    recorded_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    recorded_at = Timestamptz(default=TimestamptzNow())
    audience = Varchar(length=20)  # patient | treating_doctor | other
    told = Varchar(length=200)  # "The patient", "Dr A. Khan, treating oncologist"
    told_at = Timestamptz()
    method = Varchar(length=20)  # phone | video | in_person | secure_message
    read_back = Boolean(default=False)
    note = Text(default="")


class ReportHold(Table, tablename="review_hold"):
    """The doctor holds the report until a call with the patient has happened (a new serious
    diagnosis should not arrive by email first). One per case."""

    case = ForeignKey(Case, on_delete=OnDelete.cascade, unique=True)
    held_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    held_at = Timestamptz(default=TimestamptzNow())


class ColleagueInvite(Table, tablename="review_colleague"):
    """The reviewing doctor asks another doctor (any specialty) to read the case and comment.
    The colleague reads it through a `CaseReader` grant, ended at signing; their comment and
    whether they concur go into the signed review ("reviewed with Dr …, who concurs")."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    colleague = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    invited_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    invited_at = Timestamptz(default=TimestamptzNow())
    question = Text()  # what the reviewing doctor asks the colleague
    comment = Text(default="")
    concurs = Varchar(length=10, default="")  # yes | partly | no, once they commented
    commented_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)

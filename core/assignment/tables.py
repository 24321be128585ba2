from piccolo.columns import UUID, Boolean, ForeignKey, OnDelete, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.accounts.tables import User
from core.cases.tables import Case


class Offer(Table, tablename="assignment_offer"):
    """A case offered to one doctor, and what became of it. A case has at most one open offer
    (offered or accepted) at a time: a unique index on the case for those statuses, made by
    the migration, enforces it. Ended offers stay as the case's assignment history."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    doctor = ForeignKey(User, on_delete=OnDelete.restrict, index=True)
    # offered | accepted | declined | expired | handed_back | moved (a coordinator moved it)
    status = Varchar(length=12, default="offered", index=True)
    preferred = Boolean(default=False)  # the doctor the patient asked for
    offered_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    offered_at = Timestamptz(default=TimestamptzNow())
    respond_by = Timestamptz()  # then it moves on to the next doctor
    answered_at = Timestamptz(null=True, default=None)  # accepted or declined
    no_conflict_at = Timestamptz(null=True, default=None)  # the acceptance's declaration
    ended_at = Timestamptz(null=True, default=None)
    reason = Text(default="")  # why it was declined, handed back or moved (staff only)

from piccolo.columns import (
    UUID,
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
from core.cases.tables import Case
from core.documents.tables import ProviderLink


class RecordsRequest(Table, tablename="completeness_request"):
    """A coordinator asks the patient, or the patient's doctor through an upload link, for
    missing or unreadable records, or for physical materials; or the reviewing doctor asks the
    patient a question (`asked_by_role` "doctor"; the case is awaiting_info until it ends).
    While any request of a case is open the case waits and its clock is paused
    (core/cases/pauses.py)."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    asked_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    # The asker's role when they asked ("coordinator", "admin", "doctor"), kept on the row: the
    # rules for a doctor's question (an answer is required, ending it resumes the review) must
    # not change if the account's role does, or go when the account is deleted.
    asked_by_role = Varchar(length=16, default="coordinator")
    asked_at = Timestamptz(default=TimestamptzNow())
    message = Text()  # what is needed and why, in the coordinator's words; the patient reads it
    # "patient", or "provider": their doctor, emailed an upload link (`link`)
    audience = Varchar(length=10, default="patient")
    provider_email = Varchar(length=254, default="")
    link = ForeignKey(ProviderLink, on_delete=OnDelete.set_null, null=True, default=None)
    material = Varchar(length=32, default="")  # a physical material's key; its arrival answers
    # open | answered (the patient replied) | received (staff: it came) | withdrawn
    status = Varchar(length=10, default="open", index=True)
    answer = Text(default="")  # the patient's reply
    closed_at = Timestamptz(null=True, default=None)
    closed_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)


class MaterialArrival(Table, tablename="completeness_material"):
    """One package of a physical material (a specialty's `PhysicalMaterial`) that arrived for a
    case: what a coordinator counted and read off it, and when and how it went back."""

    uid = UUID(unique=True, index=True)
    case = ForeignKey(Case, on_delete=OnDelete.cascade, index=True)
    material = Varchar(length=32)  # the PhysicalMaterial's key
    count = Integer()  # slides, blocks, discs
    identifiers = Text(default="")  # the sender's labels, e.g. "S24-1234 A1–A3"
    note = Text(default="")  # condition on arrival (a broken slide), for staff
    arrived_at = Timestamptz(default=TimestamptzNow())
    arrived_on = Date()  # the day it arrived, as the coordinator says (may be before today)
    recorded_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)
    returned_on = Date(null=True, default=None)
    courier_ref = Varchar(length=100, default="")  # the return's tracking reference
    returned_by = ForeignKey(User, on_delete=OnDelete.set_null, null=True, default=None)

"""What one domain tells the others (see core/events.py): one frozen dataclass per fact.

Kept below every domain so that a publisher and its subscribers both can name the fact without
importing each other. Ids are database ids of the rows concerned; the handler reads what it
needs in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CaseSubmitted:
    """A patient submitted a request (cases). Payments fixes its fee, or refuses (no fee set)."""

    case_id: int
    patient: Any  # core.accounts.tables.User


@dataclass(frozen=True)
class FeePaidChanged:
    """Whether the fee of a case is paid changed (payments): a payment settled (`paid`), or the
    payment that paid it was refunded and none other did (not `paid`). Cases notes it and
    decides whether the case is received."""

    case_id: int
    paid: bool


@dataclass(frozen=True)
class RecordsChanged:
    """The records of a case changed (documents): `checklist_items` are the keys of the
    specialty's required-records checklist that its records now satisfy. Cases notes them and
    decides whether the case is received."""

    case_id: int
    checklist_items: frozenset[str]


@dataclass(frozen=True)
class CaseClosedEarly:
    """A case was declined by staff or cancelled by its patient before review (cases).
    Payments closes the open checkouts and refunds what was paid, after the commit."""

    case_id: int
    actor: Any  # core.accounts.tables.User, who declined or cancelled
    ip: str | None


@dataclass(frozen=True)
class CaseReceived:
    """A case became received: paid, and its required records in (cases). Assignment routes
    it to a doctor in the same transaction (or leaves it for the coordinators)."""

    case_id: int


@dataclass(frozen=True)
class MaterialsChanged:
    """Physical materials of a case arrived, or an arrival was struck out (completeness):
    `materials` are the keys of the specialty's physical materials in the hospital's hands.
    Cases notes them and decides whether the case is received."""

    case_id: int
    materials: frozenset[str]


@dataclass(frozen=True)
class ReviewSigned:
    """The doctor signed the review of a case (reviews): what is written about the case is
    final. Handlers end what only made sense while it was being written."""

    case_id: int
    review_uid: Any  # uuid.UUID of the SignedReview


@dataclass(frozen=True)
class ReportHoldChanged:
    """The report of a case may no longer be held for a call (reviews): the doctor lifted the
    hold, or a conversation with the patient was logged. Reports tells the patient, if the
    report is issued and nothing holds it any more."""

    case_id: int

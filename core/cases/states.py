"""The case life cycle as data: which action moves a case from which state, and who may do it.

draft → submitted → received → offered → assigned → in_review ⇄ awaiting_info → report_ready
→ closed, with cancelled / declined from the early states. An offered case goes back to
received when the doctor declines or does not answer in time, an accepted one when the doctor
hands it back; a coordinator may move it to another doctor (offered again) until the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.roles import ADMIN, COORDINATOR, DOCTOR, PATIENT

DRAFT = "draft"
SUBMITTED = "submitted"
RECEIVED = "received"
OFFERED = "offered"
ASSIGNED = "assigned"
IN_REVIEW = "in_review"
AWAITING_INFO = "awaiting_info"
REPORT_READY = "report_ready"
CLOSED = "closed"
CANCELLED = "cancelled"
DECLINED = "declined"

SYSTEM = "system"  # transitions the service makes by itself (payment + records complete)

# What a patient reads for each state: a status line and the next step.
PATIENT_STATUS = {
    DRAFT: ("Draft", "Finish your request and submit it."),
    SUBMITTED: ("Submitted", "Upload your records and pay the fee so we can start."),
    RECEIVED: ("Received for review", "We are choosing the specialist for your case."),
    # What the patient needs to know of an offer: still being matched to a specialist.
    OFFERED: ("Received for review", "We are choosing the specialist for your case."),
    ASSIGNED: ("With a specialist", "The specialist will start the review soon."),
    IN_REVIEW: ("In review", "The specialist is reviewing your case."),
    AWAITING_INFO: ("Information needed", "The specialist asked you a question. Please answer it."),
    REPORT_READY: ("Report ready", "Download your report."),
    CLOSED: ("Closed", "Your case is complete."),
    CANCELLED: ("Cancelled", "This request was cancelled."),
    DECLINED: ("Declined", "We could not take this case. Any payment is refunded."),
}


# What staff read for each state: the patient's words, except where staff need more.
STAFF_STATUS = {state: label for state, (label, _) in PATIENT_STATUS.items()} | {
    OFFERED: "Offered, not accepted yet",
    ASSIGNED: "Accepted by a doctor",
}


@dataclass(frozen=True)
class Transition:
    action: str
    sources: tuple[str, ...]
    target: str
    roles: tuple[str, ...]
    owner_only: bool = False  # a patient may act only on their own case
    assigned_only: bool = False  # a doctor may act only on a case assigned to them


TRANSITIONS = {
    t.action: t
    for t in (
        Transition("submit", (DRAFT,), SUBMITTED, (PATIENT,), owner_only=True),
        Transition("cancel", (DRAFT, SUBMITTED), CANCELLED, (PATIENT,), owner_only=True),
        Transition("receive", (SUBMITTED,), RECEIVED, (SYSTEM,)),
        Transition("decline", (SUBMITTED, RECEIVED, OFFERED), DECLINED, (COORDINATOR, ADMIN)),
        # Offers (core/assignment): the system routes, or a coordinator chooses; the doctor
        # offered answers (checked against the open offer by the assignment service).
        Transition("offer", (RECEIVED,), OFFERED, (SYSTEM, COORDINATOR, ADMIN)),
        Transition("accept", (OFFERED,), ASSIGNED, (DOCTOR,), assigned_only=True),
        Transition("decline_offer", (OFFERED,), RECEIVED, (DOCTOR,), assigned_only=True),
        Transition("offer_expired", (OFFERED,), RECEIVED, (SYSTEM,)),
        Transition("hand_back", (ASSIGNED, IN_REVIEW), RECEIVED, (DOCTOR,), assigned_only=True),
        Transition("reassign", (OFFERED, ASSIGNED, IN_REVIEW), OFFERED, (COORDINATOR, ADMIN)),
        Transition("start_review", (ASSIGNED,), IN_REVIEW, (DOCTOR,), assigned_only=True),
        Transition("request_info", (IN_REVIEW,), AWAITING_INFO, (DOCTOR,), assigned_only=True),
        # The last open question ends (core/completeness): the patient answers, or a coordinator
        # closes it ("We have it", "No longer needed", a material that arrived).
        Transition(
            "provide_info",
            (AWAITING_INFO,),
            IN_REVIEW,
            (PATIENT, COORDINATOR, ADMIN),
            owner_only=True,
        ),
        Transition("publish_report", (IN_REVIEW,), REPORT_READY, (DOCTOR,), assigned_only=True),
        Transition("close", (REPORT_READY,), CLOSED, (COORDINATOR, ADMIN, SYSTEM)),
    )
}


# States in which the case is still being worked on (its due date means something).
OPEN = (SUBMITTED, RECEIVED, OFFERED, ASSIGNED, IN_REVIEW, AWAITING_INFO, REPORT_READY)

# States in which the turnaround clock runs: from receipt until the report is ready.
ON_THE_CLOCK = (RECEIVED, OFFERED, ASSIGNED, IN_REVIEW, AWAITING_INFO)

# States in which a doctor holds the case (counts against their capacity).
WITH_A_DOCTOR = (OFFERED, ASSIGNED, IN_REVIEW, AWAITING_INFO)

# States in which the patient (or their doctor, through a link) may still add records.
ACCEPTING_RECORDS = (DRAFT, SUBMITTED, RECEIVED)
# States in which a coordinator may ask for more records or materials (until the report); while
# the case waits for them, records may be added in any of these.
BEFORE_REPORT = (SUBMITTED, RECEIVED, OFFERED, ASSIGNED, IN_REVIEW, AWAITING_INFO)


def accepts_records(status: str, *, waiting: bool = False) -> bool:
    """Whether records may be added: in the early states, and while the case waits for records
    asked of the patient (`waiting`, Case.waiting_since) until the report."""
    return status in ACCEPTING_RECORDS or (waiting and status in BEFORE_REPORT)

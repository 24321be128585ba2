"""What payments does when cases tells it something (core/events.py, core/facts.py)."""

from __future__ import annotations

from core import db
from core.cases.tables import Case
from core.events import Events
from core.facts import CaseClosedEarly, CaseSubmitted
from core.payments.fees import fix_fee
from core.payments.gateways import cancel_open_attempts, close_checkouts
from core.payments.refunds import refund_all


async def on_case_submitted(fact: CaseSubmitted) -> None:
    """Fix the fee in the submission's transaction; no fee set refuses the submission."""
    case = await Case.objects().where(Case.id == fact.case_id).first()
    if case is not None:
        await fix_fee(case, fact.patient)


async def on_case_closed_early(fact: CaseClosedEarly) -> None:
    """A declined or cancelled case: its open attempts end now (in the caller's transaction);
    the providers' checkouts are closed and what was paid is refunded after the commit."""
    case = await Case.objects().where(Case.id == fact.case_id).first()
    if case is None:
        return
    closed = await cancel_open_attempts(case, "Not needed: the case was closed.")

    async def after_commit() -> None:
        await close_checkouts(closed)
        await refund_all(case, fact.actor, ip=fact.ip)

    db.on_commit(after_commit)


def subscribe(events: Events) -> None:
    events.subscribe(CaseSubmitted, on_case_submitted)
    events.subscribe(CaseClosedEarly, on_case_closed_early)

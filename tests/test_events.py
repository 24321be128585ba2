"""Facts between domains (core/events.py): handled inside the teller's transaction, effects on
the outside world only after its commit; the rule "received" owned by cases."""

from __future__ import annotations

import logging

import pytest

from core import context, db
from core.cases import reception, states
from core.cases import service as cases
from core.cases.tables import Case
from core.events import Events
from core.facts import FeePaidChanged, RecordsChanged
from core.payments.tables import FeeRule
from tests.payment_support import submitted_case, with_checkup
from tests.support import make_person, post_form, sign_in


async def test_handlers_run_in_order_inside_the_publishers_transaction(settings) -> None:
    events, seen = Events(), []

    async def first(fact: object) -> None:
        seen.append(("first", db.current_engine().current_transaction.get() is not None))

    async def second(fact: object) -> None:
        seen.append(("second", db.current_engine().current_transaction.get() is not None))

    events.subscribe(FeePaidChanged, first)
    events.subscribe(FeePaidChanged, second)
    events.subscribe(RecordsChanged, first)  # another fact's handler is not called
    async with db.transaction():
        await events.publish(FeePaidChanged(1, True))
    assert seen == [("first", True), ("second", True)]


async def test_a_handler_that_refuses_rolls_the_publisher_back(client, app) -> None:
    # Payments refuses a submission it cannot fix a fee for: the case stays a draft.
    with_checkup(app)
    await FeeRule.delete().where(FeeRule.id > 0)
    await sign_in(client, await make_person("patient", "no-fee@example.com"))
    with pytest.raises(AssertionError):  # the submit step answers with the problem, not 303
        await submitted_case(client)
    [case] = await Case.objects()
    assert case.status == states.DRAFT and case.submitted_at is None
    page = await post_form(client, f"/requests/{case.uid}/submit")
    assert page.status_code in (400, 409) and "No fee is set" in page.text


async def test_effects_run_after_the_commit_and_never_after_a_rollback(settings, caplog) -> None:
    ran: list[str] = []

    async def effect(name: str) -> None:
        ran.append(name)

    async with db.transaction():
        db.on_commit(lambda: effect("committed"))
        assert ran == []  # not inside the transaction
    assert ran == ["committed"]
    with pytest.raises(RuntimeError):
        async with db.transaction():
            db.on_commit(lambda: effect("rolled back"))
            raise RuntimeError("roll back")
    assert ran == ["committed"]

    async def failing() -> None:
        raise ValueError("the provider is down")

    with caplog.at_level(logging.ERROR, logger="consilium.db"):
        async with db.transaction():
            db.on_commit(failing)  # the change stays committed; the failure is logged
    assert "after-commit effect failed: ValueError" in caplog.text
    assert "the provider is down" not in caplog.text  # the type only: messages can hold data
    with pytest.raises(RuntimeError, match="needs an open"):
        db.on_commit(lambda: effect("no transaction"))


async def test_cases_receive_a_case_from_the_facts_they_are_told(client, app) -> None:
    with_checkup(app)
    await sign_in(client, await make_person("patient", "facts@example.com"))
    case = await submitted_case(client)
    events = context.current().events

    async def tell(fact: object) -> Case:
        async with db.transaction():
            await events.publish(fact)
        return await cases.get_case(str(case.uid))

    assert (await tell(FeePaidChanged(case.id, True))).status == states.SUBMITTED  # no letter
    # The payment that paid was refunded before the records came: no longer paid, not received.
    assert (await tell(FeePaidChanged(case.id, False))).paid_at is None
    assert (await tell(RecordsChanged(case.id, frozenset({"letter"})))).status == states.SUBMITTED
    received = await tell(FeePaidChanged(case.id, True))
    assert received.status == states.RECEIVED and received.due_on is not None
    assert reception.missing_records(received, app.state.plugins.specialty("checkup")) == []

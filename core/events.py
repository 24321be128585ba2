"""Facts one domain tells the others, handled inside the teller's transaction.

A domain below never imports a domain above it (tests/test_architecture.py). When something
happens that another domain owns a rule about — a case was submitted (payments fixes the fee),
a payment settled or the records changed (cases decides whether the case is received), a case
was declined (payments refunds) — the domain publishes a fact (a frozen dataclass from
`core.facts`) and the owner of the rule reacts. Handlers run at once, in order of subscription,
in the publisher's task and so in its open `core.db.transaction()`: their writes commit or roll
back with the publisher's. A handler that refuses (raises) undoes the whole change. Effects on
the outside world (emails, refunds, provider calls) are not made by handlers directly: they
register them with `core.db.on_commit`, which runs them only after the commit.

Why a small registry and not a second pluggy project: handlers must be `async` (they write in
the caller's transaction) and pluggy calls hooks synchronously; facts are typed dataclasses
checked by the type checker rather than keyword arguments matched by name; and an error must
reach the publisher (to roll back), not be collected. Each app has its own `Events`, built with
its context (`core.app.build_context`), so two apps in one process never share handlers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

Fact = TypeVar("Fact")
Handler = Callable[[Any], Awaitable[None]]


class Events:
    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)

    def subscribe(self, fact_type: type[Fact], handler: Callable[[Fact], Awaitable[None]]) -> None:
        self._handlers[fact_type].append(handler)

    def handlers(self, fact_type: type) -> list[Handler]:
        return list(self._handlers.get(fact_type, ()))

    async def publish(self, fact: object) -> None:
        """Run every handler of `fact`'s type, in the caller's transaction, in order."""
        for handler in self._handlers.get(type(fact), ()):
            await handler(fact)

"""Database round trips per uploaded file (issue 12): one short transaction per file.

Before: a DICOM image of a radiology case cost 10.6 queries on SQLite and 11.4 on PostgreSQL in
two transactions — two sums over every document of the account and of the case for the limits,
an insert "uploading", an update "complete", the timeline line, the audit event, an update with
what the plugin found, and a transaction that read every checklist item of the case and told
cases, whether or not anything could change.

Now: the row is written once, complete, with what the plugin found; the limits are running
totals checked and added to in one statement; cases hear of the records only when a file brings
a checklist item the case did not have. Per file: the row, the totals, the timeline line and the
audit event (two statements on SQLite, three on PostgreSQL, whose chain takes a lock) — in one
transaction. Per form: the signed-in user, the case, and the totals, read once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from core import context, db
from core.cases.tables import Case
from core.facts import RecordsChanged
from tests.support import csrf_token
from tests.test_documents import dicom_series, multipart, new_case

PER_FILE = {"sqlite": 5, "postgres": 6}
# A form of one file: the user and the case (the request), the totals, and the file.
ONE_FILE_FORM = {"sqlite": 8, "postgres": 9}


@contextmanager
def counting() -> Iterator[dict[str, int]]:
    """Count the statements sent to the database and the transactions begun by this task (the
    test client runs the request in it), not by the app's outbox worker polling meanwhile."""
    engine_class = type(db.current_engine())
    run, begin = engine_class.run_querystring, engine_class.transaction
    counts = {"queries": 0, "transactions": 0}
    mine = asyncio.current_task()

    async def counted_run(self, querystring, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts["queries"] += asyncio.current_task() is mine
        return await run(self, querystring, *args, **kwargs)

    def counted_begin(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts["transactions"] += asyncio.current_task() is mine
        return begin(self, *args, **kwargs)

    engine_class.run_querystring = counted_run  # type: ignore[method-assign]
    engine_class.transaction = counted_begin  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        engine_class.run_querystring = run  # type: ignore[method-assign]
        engine_class.transaction = begin  # type: ignore[method-assign]


async def send(client: httpx.AsyncClient, uid: str, images: list[bytes]) -> None:
    fields = [("file", (f"IM{n:04d}", data, "application/dicom")) for n, data in enumerate(images)]
    body, content_type = multipart(fields)
    answer = await client.post(
        f"/cases/{uid}/documents/",
        content=body,
        headers={"content-type": content_type, "x-csrftoken": csrf_token(client)},
    )
    assert answer.status_code == 303, answer.text


async def test_one_short_transaction_per_uploaded_file(client, database_url) -> None:
    engine = "postgres" if database_url else "sqlite"
    told: list[RecordsChanged] = []

    async def note(fact: RecordsChanged) -> None:
        told.append(fact)

    context.current().events.subscribe(RecordsChanged, note)
    _, uid = await new_case(client, "queries@example.com", slug="radiology")
    images = dicom_series(13)

    # The first image brings "images" (the radiology checklist): cases hear of it, once.
    await send(client, uid, images[:1])
    assert [sorted(fact.checklist_items) for fact in told] == [["images"]]
    case = await Case.objects().where(Case.uid == uid).first()
    assert "images" in case.records_in

    with counting() as one:
        await send(client, uid, images[1:2])
    with counting() as eleven:
        await send(client, uid, images[2:13])
    per_file = (eleven["queries"] - one["queries"]) / 10
    assert per_file == PER_FILE[engine], (one, eleven)
    assert one["queries"] == ONE_FILE_FORM[engine]
    assert eleven["transactions"] - one["transactions"] == 10  # one per file
    assert len(told) == 1  # nothing new for the checklist: cases were not told again

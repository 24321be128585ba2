"""Lists that grow with history are shown a page at a time (issue 12): keyset pagination.

The patient's cases on /dashboard, the staff queues (/staff/cases?queue=…, and the received
list on the coordinator's /dashboard) and the audit log (/admin/audit) each:

- cost the same few queries for a page of one row and for a full page (no query per row, no
  query that reads the whole list), on both engines;
- walk forward ("Older", "Next page") through every row once, in the list's order, with no
  duplicates even when rows share a timestamp, and back again to the same pages;
- take their cursor from the query string as something to check: a malformed or made-up cursor
  is the first page, never a 500, and a patient's cursor only ever positions their own cases.

Rows are written straight into the tables (60 cases through the wizard would take minutes).
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from core import db
from core.audit import service as audit
from core.cases import states
from core.cases.tables import Case
from core.documents.tables import Document
from core.payments.tables import Payment
from core.web import PAGE_SIZE, decode_cursor, encode_cursor
from tests.conftest import open_client
from tests.support import Person, make_person, sign_in

MANY = 60  # more than two pages of cases (PAGE_SIZE 25)
AUDIT_PAGE_SIZE = 50
MANY_EVENTS = 120  # more than two pages of events
T0 = datetime(2026, 10, 2, 9, 5, tzinfo=UTC)


# Counting queries --------------------------------------------------------------------------------


@contextmanager
def counting_queries(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement Piccolo sends to the current engine while the block runs, from this task
    only (the app's outbox worker polls in a task of its own). Wraps `run_querystring` of the
    engine's class (engines have __slots__: the instance cannot be patched), which every Piccolo
    query (select, objects, raw, insert; in a transaction or not) goes through on both engines,
    whatever class core.db builds."""
    engine = db.current_engine()
    engine_class = type(engine)
    original = engine_class.run_querystring
    me = asyncio.current_task()
    sent: list[str] = []

    async def counted(self: Any, querystring: Any, *args: Any, **kwargs: Any) -> Any:
        if self is engine and asyncio.current_task() is me:
            sent.append(str(querystring))
        return await original(self, querystring, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(engine_class, "run_querystring", counted)
        yield sent


async def get_counted(client: AsyncClient, monkeypatch: pytest.MonkeyPatch, url: str):
    with counting_queries(monkeypatch) as sent:
        response = await client.get(url)
    assert response.status_code == 200, response.text
    # The counter sees the engine's queries on this engine (the list's own query among them).
    assert any("case_case" in query or "audit_event" in query for query in sent), sent
    return response, len(sent)


# Rows straight into the tables -------------------------------------------------------------------

_numbers = iter(range(1, 10**6))


def reference() -> str:
    return f"PG-{next(_numbers):06d}"


async def add_cases(
    patient: Person, count: int, *, status: str = states.DRAFT, times: list[datetime] | None = None
) -> list[Case]:
    """`count` cases of `patient` in `status`; the i-th has every time column set to times[i]
    (default: all the same moment), so the id alone orders cases with the same time."""
    times = times or [T0] * count
    rows = [
        Case(
            uid=uuid.uuid4(),
            reference=reference(),
            patient=patient.user.id,
            specialty="general",
            status=status,
            created_at=at,
            updated_at=at,
            submitted_at=None if status == states.DRAFT else at,
            received_at=at if status == states.RECEIVED else None,
            due_on=(at + timedelta(days=5)).date() if status == states.RECEIVED else None,
        )
        for at in times[:count]
    ]
    await Case.insert(*rows)
    return await Case.objects().where(Case.uid.is_in([row.uid for row in rows]))


def clustered(
    count: int, *, step: timedelta = timedelta(minutes=1), size: int = 7
) -> list[datetime]:
    """Times in runs of `size` equal ones, runs that straddle page boundaries, out of id order
    (so the list's order is by time first, then by id)."""
    runs = [T0 + step * (run * 7 % 11) for run in range(count // size + 1)]
    return [runs[index // size] for index in range(count)]


def in_order(cases: list[Case], column: str, *, newest_first: bool) -> list[str]:
    ordered = sorted(cases, key=lambda case: (getattr(case, column), case.id), reverse=newest_first)
    return [case.reference for case in ordered]


# Reading pages -----------------------------------------------------------------------------------

REFERENCE_RE = re.compile(r'href="/(?:staff/)?cases/[0-9a-f-]{36}">([A-Z]{2}-[0-9-]+)</a>')


def references(page: str) -> list[str]:
    return REFERENCE_RE.findall(page)


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    return html.unescape(found.group(1)) if found else None


async def walk(client: AsyncClient, url: str, read=references) -> tuple[list[list[str]], str]:
    """Every page from `url` on, following the "next" links; and the last page's URL."""
    pages = []
    while True:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        pages.append(read(response.text))
        following = link(response.text, "next")
        if following is None:
            return pages, url
        url = following
        assert len(pages) <= MANY_EVENTS, "the pages never end"


async def walk_back(client: AsyncClient, url: str, read=references) -> list[list[str]]:
    """Every page before `url`, following the "prev" links, in the list's order."""
    pages = []
    response = await client.get(url)
    while (previous := link(response.text, "prev")) is not None:
        response = await client.get(previous)
        assert response.status_code == 200, response.text
        pages.insert(0, read(response.text))
        assert len(pages) <= MANY_EVENTS, "the pages never end"
    return pages


def check_walk(pages: list[list[str]], expected: list[str], size: int) -> None:
    seen = [reference for page in pages for reference in page]
    assert len(seen) == len(set(seen)), "a row shown twice"
    assert seen == expected  # every row once, in order
    assert all(len(page) == size for page in pages[:-1]) and 0 < len(pages[-1]) <= size


# Cursors -----------------------------------------------------------------------------------------


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    for key, kinds in (
        ((T0, 42), (datetime, int)),
        ((T0.replace(microsecond=123456), 1), (datetime, int)),
        ((datetime(1970, 1, 1, tzinfo=UTC), 2**31 - 1), (datetime, int)),
        ((date(2026, 10, 2), 7), (date, int)),
        ((57,), (int,)),
    ):
        assert decode_cursor(encode_cursor(key), kinds) == key
    assert encode_cursor((T0, 42)) == f"{int(T0.timestamp()) * 10**6}.42"
    kinds = (datetime, int)
    for odd in (
        None,
        "",
        "1",
        "1.2.3",
        "-1.2",
        "+1.2",
        "1.-2",
        " 1.2",
        "1.2\n",
        "1e5.2",
        "1_000.2",
        "١٢.3",  # digits int() reads, not ASCII
        "0x10.2",
        "1.2147483648",  # past a 32-bit id: PostgreSQL would refuse it with a 500
        f"{10**19}.1",  # past year 9999
        "9" * 40 + ".1",
        "1." + "0" * 90,
    ):
        assert decode_cursor(odd, kinds) is None, odd
    assert decode_cursor("0", (date,)) is None  # no day 0


# The patient's cases -----------------------------------------------------------------------------


async def test_a_patients_page_costs_the_same_queries_for_one_case_and_for_many(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    few, many = await make_person("patient"), await make_person("patient")
    await add_cases(few, 1)
    await add_cases(many, MANY, times=clustered(MANY))
    counts = {}
    for person in (few, many):
        async with open_client(client._transport.app) as browser:  # type: ignore[attr-defined]
            await sign_in(browser, person)
            await browser.get("/dashboard")  # the session settles (a first visit may write)
            first, counts[person.email] = await get_counted(browser, monkeypatch, "/dashboard")
            shown = len(references(first.text))
            assert shown == (1 if person is few else PAGE_SIZE)
            if person is many:
                older = link(first.text, "next")
                assert older is not None
                _, counts["page 2"] = await get_counted(browser, monkeypatch, older)
    assert counts[few.email] == counts[many.email] == counts["page 2"] <= 4, counts


async def test_a_patient_walks_every_case_once_in_order(client: AsyncClient) -> None:
    patient = await make_person("patient")
    made = await add_cases(patient, MANY, times=clustered(MANY))
    await sign_in(client, patient)
    expected = in_order(made, "created_at", newest_first=True)

    pages, last = await walk(client, "/dashboard")
    check_walk(pages, expected, PAGE_SIZE)
    assert len(pages) == 3
    first = await client.get("/dashboard")
    assert 'rel="prev"' not in first.text and "Older requests" in first.text
    # And back: the same pages, from the last to the first.
    assert [*await walk_back(client, last), pages[-1]] == pages


async def test_a_patients_cursor_never_shows_another_patients_cases(client: AsyncClient) -> None:
    mine, theirs = await make_person("patient"), await make_person("patient")
    own = await add_cases(mine, 30, times=clustered(30))
    other = await add_cases(theirs, 30, times=clustered(30, step=timedelta(seconds=30)))
    own_refs = {case.reference for case in own}
    await sign_in(client, mine)

    # Their cursors (each of their cases' keys), ours, made-up and malformed ones.
    cursors = [encode_cursor((case.created_at, case.id)) for case in other]
    cursors += [encode_cursor((case.created_at, case.id)) for case in own]
    cursors += ["0.0", "1.1", f"{10**17}.1", "253402300799999999.2147483647", "x", "%00", "1.2.3"]
    for cursor in cursors:
        for direction in ("after", "before"):
            response = await client.get("/dashboard", params={direction: cursor})
            assert response.status_code == 200
            shown = references(response.text)
            assert shown and set(shown) <= own_refs, (direction, cursor)

    # A cursor that is not one is the first page.
    first = references((await client.get("/dashboard")).text)
    for odd in ("", "junk", "1.2.3", "-5.1", "١٢.٣", "9" * 200):
        response = await client.get("/dashboard", params={"after": odd, "before": odd})
        assert references(response.text) == first


async def test_a_cursor_past_either_end_shows_the_first_page(client: AsyncClient) -> None:
    patient = await make_person("patient")
    made = await add_cases(patient, 30, times=clustered(30))
    await sign_in(client, patient)
    newest_first = sorted(made, key=lambda case: (case.created_at, case.id), reverse=True)
    first = references((await client.get("/dashboard")).text)
    assert first == [case.reference for case in newest_first[:PAGE_SIZE]]
    # Fewer than a page before the cursor: the whole first page, not a short one.
    near_start = newest_first[3]
    key = encode_cursor((near_start.created_at, near_start.id))
    back = await client.get("/dashboard", params={"before": key})
    assert references(back.text) == first and 'rel="prev"' not in back.text
    # Nothing after the cursor (the oldest case): the first page, not an empty one.
    oldest = newest_first[-1]
    key = encode_cursor((oldest.created_at, oldest.id))
    past = await client.get("/dashboard", params={"after": key})
    assert references(past.text) == first and 'rel="prev"' not in past.text


# The staff queues --------------------------------------------------------------------------------

QUEUES = {
    # queue: (the state its cases are in, the time it orders by, newest first?)
    "received": (states.RECEIVED, "received_at", False),
    "waiting": (states.SUBMITTED, "submitted_at", False),
    "declined": (states.DECLINED, "updated_at", True),
    "refunds": (states.DECLINED, "submitted_at", False),
}


async def add_refunds_due(cases: list[Case]) -> None:
    await Payment.insert(
        *[
            Payment(
                uid=uuid.uuid4(),
                case=case.id,
                provider="offline",
                status="refund_due",
                currency="PKR",
                amount_minor=450000,
                idempotency_key=f"pg-{uuid.uuid4()}",
            )
            for case in cases
        ]
    )


async def queue_world(name: str, count: int) -> list[Case]:
    status = QUEUES[name][0]
    patient = await make_person("patient")
    made = await add_cases(patient, count, status=status, times=clustered(count))
    if name == "refunds":
        await add_refunds_due(made)
        await add_refunds_due(made[:3])  # a case with two refunds due is listed once
    return made


@pytest.mark.parametrize("name", list(QUEUES))
async def test_a_queue_walks_every_case_once_in_its_order(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    coordinator = await make_person("coordinator")
    await sign_in(client, coordinator)
    url = f"/staff/cases?queue={name}"
    made = await queue_world(name, 1)
    await client.get(url)
    one, one_count = await get_counted(client, monkeypatch, url)
    assert len(references(one.text)) == 1

    made += await queue_world(name, MANY - 1)
    full, many_count = await get_counted(client, monkeypatch, url)
    following = link(full.text, "next")
    assert following and f"queue={name}" in following  # the links keep the queue
    _, later_count = await get_counted(client, monkeypatch, following)
    assert one_count == many_count == later_count <= 4, (one_count, many_count, later_count)

    _, column, newest_first = QUEUES[name]
    pages, last = await walk(client, url)
    check_walk(pages, in_order(made, column, newest_first=newest_first), PAGE_SIZE)
    assert [*await walk_back(client, last), pages[-1]] == pages


async def test_the_coordinators_dashboard_pages_the_received_cases(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    coordinator = await make_person("coordinator")
    await sign_in(client, coordinator)
    made = await queue_world("received", 1)
    await client.get("/dashboard")
    _, one_count = await get_counted(client, monkeypatch, "/dashboard")
    made += await queue_world("received", MANY - 1)
    _, many_count = await get_counted(client, monkeypatch, "/dashboard")
    assert one_count == many_count <= 4

    pages, last = await walk(client, "/dashboard")
    check_walk(pages, in_order(made, "received_at", newest_first=False), PAGE_SIZE)
    assert [*await walk_back(client, last), pages[-1]] == pages
    # Another queue's state never shows here, whatever the cursor.
    waiting = await queue_world("waiting", 3)
    for case in waiting:
        cursor = encode_cursor((case.submitted_at, case.id))
        page = (await client.get("/dashboard", params={"after": cursor})).text
        assert case.reference not in page


async def test_odd_queue_queries_are_the_first_page(client: AsyncClient) -> None:
    await sign_in(client, await make_person("coordinator"))
    await queue_world("waiting", 30)
    first = references((await client.get("/staff/cases", params={"queue": "waiting"})).text)
    assert len(first) == PAGE_SIZE
    for params in (
        {"queue": "waiting", "after": "nope"},
        {"queue": "waiting", "before": "1.2147483648"},
        {"queue": "waiting", "after": "1" * 81},
    ):
        response = await client.get("/staff/cases", params=params)
        assert response.status_code == 200
        assert references(response.text) == first
    # An unknown queue is the received one, and its links say so.
    unknown = await client.get("/staff/cases", params={"queue": "nope"})
    assert 'href="/staff/cases?queue=received" aria-current="page"' in unknown.text


# The audit log -----------------------------------------------------------------------------------


async def record_many(actor: Person, action: str, count: int) -> None:
    for number in range(count):
        await audit.record(action, actor=actor.user, object_type="case", object_id=str(number))


def seqs(page: str) -> list[str]:
    return re.findall(r"<td data-label=\"Object\">case (\d+)</td>", page)


async def test_the_audit_log_pages_by_sequence_number(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await make_person("admin")
    await sign_in(client, admin)
    await record_many(admin, "pg.one", 1)
    await record_many(admin, "pg.many", MANY_EVENTS)
    await client.get("/admin/audit")
    _, one_count = await get_counted(client, monkeypatch, "/admin/audit?action=pg.one")
    full, many_count = await get_counted(client, monkeypatch, "/admin/audit?action=pg.many")
    older = link(full.text, "next")
    assert older and "action=pg.many" in older  # the filters stay on every page
    _, later_count = await get_counted(client, monkeypatch, older)
    # The log is written too (reading it is an event): still the same few statements.
    assert one_count == many_count == later_count <= 8, (one_count, many_count, later_count)

    pages, last = await walk(client, "/admin/audit?action=pg.many", read=seqs)
    check_walk(pages, [str(n) for n in reversed(range(MANY_EVENTS))], AUDIT_PAGE_SIZE)
    assert len(pages) == 3
    assert [*await walk_back(client, last, read=seqs), pages[-1]] == pages

    # The old offset, and cursors that are not ones, are the first page; never a 500.
    for params in (
        {"offset": "50"},
        {"offset": "9223372036854775808"},
        {"after": "9223372036854775808"},
        {"before": "-1"},
        {"after": "1.2"},
    ):
        response = await client.get("/admin/audit", params={"action": "pg.many", **params})
        assert response.status_code == 200
        assert seqs(response.text) == pages[0], params


# The records of a big case -----------------------------------------------------------------------

SINGLE_FILES = 120  # more than two pages of lines (RECORD_LINES_PER_PAGE 50)
STUDY_IMAGES = 300  # one study: one line, however many images


async def add_records(case: Case, singles: int, study_images: int = 0) -> None:
    """Rows of complete records (no stored bytes: the list reads none): `singles` PDFs, then a
    study of `study_images` images, then more PDFs, so that the study sits inside a page."""

    def record(name: str, kind: str, **more: Any) -> Document:
        return Document(
            uid=uuid.uuid4(),
            case=case.id,
            storage_key=uuid.uuid4().hex,
            display_name=name,
            kind=kind,
            media_type="application/pdf" if kind == "pdf" else "application/dicom",
            status="complete",
            size=1000,
            **more,
        )

    first = [record(f"letter-{n:03d}.pdf", "pdf") for n in range(singles // 4)]
    facts = json.dumps({"group": "1.2.3.4", "group_label": "CT chest, 2 Oct 2026"})
    study = [
        record(f"IM{n:05d}", "dicom", group_key="1.2.3.4", facts=facts) for n in range(study_images)
    ]
    rest = [record(f"letter-{n:03d}.pdf", "pdf") for n in range(singles // 4, singles)]
    for rows in (first, study, rest):  # in this order: ids follow it
        if rows:
            await Document.insert(*rows)


def record_names(page: str) -> list[str]:
    """The records named on a case page: single files and study lines."""
    return re.findall(r"(letter-\d{3}\.pdf|CT chest, 2 Oct 2026, [\d,]+ images)</", page)


async def test_a_big_case_shows_its_records_a_page_at_a_time(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case with 120 letters and a study of 300 images: 121 lines, 50 a page, the study one
    line naming its first 50 images; the same queries as a case with one file."""
    patient = await make_person("patient")
    small, big = await add_cases(patient, 2)
    await add_records(small, 1, 1)  # a letter and a study of one image
    await add_records(big, SINGLE_FILES, STUDY_IMAGES)
    await sign_in(client, patient)
    counts = {}
    for case in (small, big):
        await client.get(f"/cases/{case.uid}")
        _, counts[case.uid] = await get_counted(client, monkeypatch, f"/cases/{case.uid}")
    assert counts[small.uid] == counts[big.uid], counts

    first = (await client.get(f"/cases/{big.uid}")).text
    assert "CT chest, 2 Oct 2026, 300 images" in first
    assert "IM00049<" in first and "IM00050<" not in first  # the first 50 images named
    assert "and 250 more" in first
    pages, _ = await walk(client, f"/cases/{big.uid}", read=record_names)
    assert [len(lines) for lines in pages] == [50, 50, 21]
    every = [name for lines in pages for name in lines]
    assert len(every) == len(set(every)) == SINGLE_FILES + 1
    assert every[30] == "CT chest, 2 Oct 2026, 300 images"  # after the first 30 letters
    # The lines' query reads a page, not the case: the limit is in the SQL.
    from core.documents import service as documents

    leads = await documents.lead_documents(big, limit=5)
    assert [doc.display_name for doc in leads][:1] == ["letter-000.pdf"] and len(leads) == 5

"""Queues that stay fast (issue 14): the staff queues and a doctor's cases at 1k to 100k cases.
Not a test: it prints figures.

    .venv/bin/python bench/staff_queues.py                            # every size, both engines
    .venv/bin/python bench/staff_queues.py --sizes 1000,10000 --engines sqlite --seconds 5

For each engine and size, a fresh database (SQLite in a temporary var dir; PostgreSQL: a
throwaway database made on `--postgres` and dropped afterwards) is migrated, staff are made
through the services (a coordinator and nine doctors, TOTP enrolled for those who sign in), and
the cases are written with bulk SQL (sqlite3 `executemany`, asyncpg `COPY`), not the services:

- a few hundred open cases across every open state (`OPEN_MIX`), the rest mostly closed, some
  cancelled, declined or drafts; the four specialties; due dates spread around today, a few
  cases paused (waiting for the patient);
- every case from "offered" on has a doctor of its specialty and its Offer row ("offered" or
  "accepted"; a closed case keeps its accepted offer, as the app leaves it), some earlier
  offers that lapsed; "busy" holds 30 open cases and their share of the closed ones, "new"
  holds 30 open cases and nothing closed.

Then, in process (no server running): `counts_in` and the board's page query, 100 calls each,
`doctor_cases` for both doctors; EXPLAIN (SQLite: QUERY PLAN, PostgreSQL: ANALYZE) of the
queue queries at the largest size; and the render-only ceiling: `staff/queue.html` rendered
with the app's Jinja environment from 25 in-memory `CaseLine`s, renders per second on one core.

Then the app under uvicorn (as bench/pages.py) and wrk (one thread, `--connections`, for
`--seconds` each): a static file (the server's HTTP ceiling), the board `/staff/cases?queue=open`,
"To assign" `/staff/cases?queue=received`, and `/dashboard` for the two doctors.
Goal (issue 14): the board at the largest size serves >= 80 % of its rate at the smallest.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file would stand in for
# the standard library's `queue` (aiosqlite and asyncio import it): look in the folder last.
HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
sys.path.append(str(HERE))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from common import (  # noqa: E402
    PASSWORD,
    Load,
    Spy,
    bench_settings,
    in_app_context,
    serving,
    top_of,
    wrk,
)

SPECIALTIES = ("radiology", "pathology", "surgical", "general")
# How many cases each open state holds (scaled down when the size is below 1,000).
OPEN_MIX = {
    "submitted": 60,
    "received": 60,
    "offered": 30,
    "assigned": 50,
    "in_review": 50,
    "awaiting_info": 20,
    "report_ready": 30,
}
# What the rest are, by share: mostly closed.
CLOSED_MIX = (("closed", 0.85), ("cancelled", 0.05), ("declined", 0.04), ("draft", 0.06))
WITH_A_DOCTOR = ("offered", "assigned", "in_review", "awaiting_info")
# The two doctors whose "My cases" is measured hold this many open cases each (radiology).
HELD = {"offered": 6, "assigned": 10, "in_review": 10, "awaiting_info": 4}
BOARD_RATE_FLOOR = 0.80  # the board at the largest size, x its rate at the smallest
COORDINATOR = "coordinator@queue.example"
BUSY, NEW = "busy@queue.example", "new@queue.example"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Staff:
    coordinator: tuple[str, str] = ("", "")  # email, TOTP secret
    # email: id, specialty, TOTP secret ("" for those who do not sign in)
    doctors: dict[str, tuple[int, str, str]] = field(default_factory=dict)


@dataclass
class Run:
    engine: str
    size: int
    seed_seconds: float = 0.0
    busy_closed: int = 0  # closed cases the busy doctor reviewed (accepted offers kept)
    loads: dict[str, Load] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows on each page, fetched once
    in_process_ms: dict[str, float] = field(default_factory=dict)  # per call
    renders_per_second: float = 0.0
    renders_cached_holidays: float = 0.0  # the same, the holiday calendar built once (bench only)
    assign_renders: tuple[float, float] = (0.0, 0.0)  # the same two, "To assign"'s first page
    explain: list[str] = field(default_factory=list)
    board: dict[str, Any] = field(default_factory=dict)  # the board's rows, counts, doctors


# Staff, through the services ---------------------------------------------------------------------


async def _make_staff() -> Staff:
    import pyotp

    from core.accounts import second_factor
    from core.accounts import service as accounts

    staff = Staff()

    async def person(email: str, role: str, specialties: list[str], signs_in: bool) -> Any:
        user = await accounts.create_staff(
            email=email,
            full_name=f"Dr {email.split('@')[0].title()}" if role == "doctor" else "Coordinator",
            role=role,
            specialties=specialties,
            known_specialties=set(SPECIALTIES),
            by=None,
            password=PASSWORD if signs_in else None,
        )
        secret = ""
        if signs_in:  # staff sign in with a second factor; enrolled with the previous code
            secret = second_factor.new_secret()
            previous = int(time.time() // 30) - 1
            codes = await second_factor.enable(
                user, secret, pyotp.TOTP(secret).generate_otp(previous), ip=None
            )
            assert codes, "TOTP enrolment refused"
        return user, secret

    user, secret = await person(COORDINATOR, "coordinator", [], True)
    staff.coordinator = (COORDINATOR, secret)
    for email in (BUSY, NEW):
        user, secret = await person(email, "doctor", ["radiology"], True)
        staff.doctors[email] = (user.id, "radiology", secret)
    for number, specialty in enumerate(SPECIALTIES * 2):  # radiology gets a third and fourth
        email = f"doctor{number}@queue.example"
        user, _ = await person(email, "doctor", [specialty], False)
        staff.doctors[email] = (user.id, specialty, "")
    return staff


# Cases, with bulk SQL ----------------------------------------------------------------------------

CASE_COLUMNS = (
    "id uid reference patient specialty status subject_kind subject_name draft intake questions "
    "assigned_doctor created_at updated_at submitted_at paid_at received_at due_on due_first "
    "waiting_since"
).split()
OFFER_COLUMNS = (
    "id uid case doctor status offered_at respond_by answered_at no_conflict_at ended_at"
).split()
USER_COLUMNS = "id uid email role full_name country created_at".split()

INTAKE = json.dumps(
    {
        "version": 1,
        "values": {
            "history": "Persistent cough for three months, weight loss, ex-smoker. " * 4,
            "medications": "Salbutamol inhaler; omeprazole 20 mg",
            "prior_imaging": "yes",
            "urgency": "routine",
        },
    }
)
DRAFT = json.dumps({"subject": {"subject_kind": ["self"]}, "intake": {"history": ["…"]}})
QUESTIONS = json.dumps(["Is surgery needed?", "Would a biopsy change the plan?"])


@dataclass
class Seed:
    cases: list[tuple] = field(default_factory=list)
    offers: list[tuple] = field(default_factory=list)
    users: list[tuple] = field(default_factory=list)
    busy_closed: int = 0


def make_rows(size: int, staff: Staff, first_user_id: int, rng: random.Random) -> Seed:
    """Every row to insert, as tuples in CASE_COLUMNS / OFFER_COLUMNS / USER_COLUMNS order."""
    seed = Seed()
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    patients = max(20, size // 5)
    for number in range(patients):
        created = now - timedelta(days=rng.randint(0, 900), seconds=rng.randint(0, 86400))
        seed.users.append(
            (
                first_user_id + number,
                uuid.uuid4(),
                f"patient{number}@queue.example",
                "patient",
                f"Patient {number}",
                "PK",
                created,
            )
        )
    by_specialty: dict[str, list[int]] = {}  # who takes the open cases nobody must hold
    for email, (doctor_id, specialty, _) in staff.doctors.items():
        if email not in (BUSY, NEW):
            by_specialty.setdefault(specialty, []).append(doctor_id)
    busy, new = staff.doctors[BUSY][0], staff.doctors[NEW][0]
    reviewed = {**by_specialty, "radiology": [*by_specialty["radiology"], busy]}  # closed ones
    scale = min(1.0, size * 0.3 / sum(OPEN_MIX.values()))
    statuses: list[tuple[str, int | None]] = []  # (status, the doctor who must hold it)
    for status, count in OPEN_MIX.items():
        held = HELD.get(status, 0) if scale == 1.0 else 0
        statuses += [(status, busy)] * held + [(status, new)] * held
        statuses += [(status, None)] * (round(count * scale) - 2 * held)
    rest = size - len(statuses)
    for status, share in CLOSED_MIX[1:]:
        statuses += [(status, None)] * round(rest * share)
    statuses += [("closed", None)] * (size - len(statuses))
    rng.shuffle(statuses)
    offer_id = 0
    for case_id, (status, holder) in enumerate(statuses, start=1):
        opened = status not in ("draft", "cancelled", "closed", "declined")
        age = timedelta(days=rng.randint(0, 12) if opened else rng.randint(14, 730))
        created = now - age - timedelta(days=2, seconds=rng.randint(0, 86400))
        specialty = "radiology" if holder else rng.choice(SPECIALTIES)
        submitted = paid = received = due = due_first = waiting = None
        if status != "draft":
            submitted = created + timedelta(hours=rng.randint(1, 30))
        if status not in ("draft", "submitted", "cancelled") and not (
            status == "declined" and rng.random() < 0.5
        ):
            paid = submitted + timedelta(hours=rng.randint(0, 20))  # type: ignore[operator]
            received = paid + timedelta(hours=rng.randint(0, 30))
            due_first = received.date() + timedelta(days=10)
            # On the clock: due dates spread around today, some overdue, some at risk.
            due = today + timedelta(days=rng.randint(-4, 14)) if opened else due_first
        if status in ("received", "in_review") and rng.random() < 0.05:
            waiting = now - timedelta(days=rng.randint(0, 3))  # paused: waiting for the patient
        doctor = None
        if status in (*WITH_A_DOCTOR, "report_ready", "closed") and received is not None:
            doctor = holder or rng.choice(
                (reviewed if status == "closed" else by_specialty)[specialty]
            )
            if rng.random() < 0.1:  # an offer that lapsed before this one
                offer_id += 1
                other = rng.choice(by_specialty[specialty])
                at = received + timedelta(hours=1)
                lapsed = at + timedelta(hours=48)
                seed.offers.append(
                    (offer_id, uuid.uuid4(), case_id, other, "expired", at, lapsed, None, None,
                     lapsed)
                )  # fmt: skip
            offer_id += 1
            accepted = status != "offered"
            at = received + timedelta(hours=rng.randint(50, 60))
            if not accepted:  # still open to an answer through the run (else the job ends it)
                at = now - timedelta(hours=rng.randint(1, 20))
            answered = at + timedelta(hours=3) if accepted else None
            seed.offers.append(
                (offer_id, uuid.uuid4(), case_id, doctor, "accepted" if accepted else "offered",
                 at, at + timedelta(hours=48), answered, answered, None)
            )  # fmt: skip
            if doctor == busy and status == "closed":
                seed.busy_closed += 1
        updated = max(t for t in (created, submitted, received) if t is not None)
        seed.cases.append(
            (
                case_id,
                uuid.uuid4(),
                f"SO-{created.year}-{case_id:07d}",
                first_user_id + rng.randrange(patients),
                specialty,
                status,
                "self" if status != "draft" else "",
                "",
                DRAFT,
                INTAKE if status != "draft" else "{}",
                QUESTIONS if status != "draft" else "[]",
                doctor,
                created,
                updated,
                submitted,
                paid,
                received,
                due,
                due_first,
                waiting,
            )
        )
    return seed


def _chunks(rows: list[tuple], size: int = 5000) -> Any:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def insert_sqlite(path: Path, seed: Seed, analyze: bool) -> None:
    import sqlite3

    import piccolo.engine.sqlite  # noqa: F401  its adapters: datetimes, dates, UUIDs as Piccolo writes them

    with sqlite3.connect(path) as connection:
        for table, columns, rows in (
            ("account_user", USER_COLUMNS, seed.users),
            ("case_case", CASE_COLUMNS, seed.cases),
            ("assignment_offer", OFFER_COLUMNS, seed.offers),
        ):
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608  our names
            connection.executemany(insert, rows)
        if analyze:
            connection.execute("ANALYZE")


async def insert_postgres(url: str, seed: Seed) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        for table, columns, rows in (
            ("account_user", USER_COLUMNS, seed.users),
            ("case_case", CASE_COLUMNS, seed.cases),
            ("assignment_offer", OFFER_COLUMNS, seed.offers),
        ):
            for chunk in _chunks(rows):
                await connection.copy_records_to_table(table, records=chunk, columns=columns)
            last = f"(SELECT max(id) FROM {table})"  # noqa: S608  our table names
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})"
            )
        await connection.execute("ANALYZE")  # what autovacuum does soon after a bulk load
    finally:
        await connection.close()


# In process: the queries by themselves, their plans, the render-only ceiling ---------------------


async def _timed(work: Any, calls: int, budget: float = 5.0) -> float:
    """Milliseconds per call of `work()`: `calls` calls, or as many as fit in `budget` seconds."""
    await work()  # warm: the first call compiles and connects
    started = time.perf_counter()
    done = 0
    while done < calls and (done == 0 or time.perf_counter() - started < budget):
        await work()
        done += 1
    return 1000 * (time.perf_counter() - started) / done


def _queries() -> dict[str, Any]:
    """The queues' queries as the services build them (core/cases/service.py cases_in,
    counts_in; core/assignment/service.py doctor_cases), for EXPLAIN."""
    from piccolo.query.functions.aggregate import Count

    from core.assignment.tables import Offer
    from core.cases import service as cases
    from core.cases import states
    from core.cases.tables import Case

    lines = cases._LINE_COLUMNS
    board = cases._status_in_literally(states.ON_THE_CLOCK)
    counted = [*states.ON_THE_CLOCK, states.SUBMITTED, states.DECLINED]
    return {
        "board page (cases_in ON_THE_CLOCK, limit 26)": Case.select(*lines)
        .where(board)
        .order_by(Case.due_on, Case.id)
        .limit(26),
        "counts per state (counts_in, as /staff/cases asks)": Case.select(
            Case.status, Count(alias="count")
        )
        .where(Case.status.is_in(counted))
        .group_by(Case.status),
        "To assign page (cases_in received, limit 26)": Case.select(*lines)
        .where(Case.status == states.RECEIVED)
        .order_by(Case.received_at, Case.id)
        .limit(26),
        "doctor_cases: the busy doctor's open offers": Offer.select().where(
            (Offer.doctor == -1) & Offer.status.is_in(["offered", "accepted"])
        ),
    }


async def _explain(name: str, query: Any, postgres: bool, doctor_id: int) -> list[str]:
    from piccolo.querystring import QueryString

    from core import db

    engine = db.current_engine()
    inner = query.querystrings[0]
    sql, args = inner.compile_string(engine_type="postgres" if postgres else "sqlite")
    args = [doctor_id if arg == -1 else arg for arg in args]
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    if postgres:
        connection = await engine.get_new_connection()
        try:
            rows = await connection.fetch(prefix + sql, *args)
        finally:
            await connection.close()
        return [f"  {name}:"] + [f"    {row[0]}" for row in rows]
    rows = await engine.run_querystring(QueryString(prefix + sql.replace("?", "{}"), *args))
    return [f"  {name}:"] + [f"    {row['detail']}" for row in rows]


def _fake_request(app: Any, user: Any) -> Any:
    from litestar import Request
    from litestar.utils.scope.state import ScopeState

    scope: dict[str, Any] = {
        "type": "http",
        "app": app,
        "method": "GET",
        "path": "/staff/cases",
        "root_path": "",
        "query_string": b"queue=open",
        "headers": [],
        "state": {},
        "path_params": {},
        "user": user,
        "auth": "full",
    }
    ScopeState.from_scope(scope).csrf_token = "x" * 64  # type: ignore[arg-type]
    return Request(scope)  # type: ignore[arg-type]


@contextlib.contextmanager
def holiday_calendars_cached() -> Iterator[None]:
    """`holidays.country_holidays` remembering what it built, in this process only: how fast
    the page renders when the turnaround badge (core/cases/turnaround.py, which builds a
    calendar for each row it is asked about) does not build the calendar again. No app change."""
    import holidays

    original = holidays.country_holidays
    holidays.country_holidays = functools.lru_cache(maxsize=64)(original)
    try:
        yield
    finally:
        holidays.country_holidays = original


async def render_rate(
    settings: Any, board: dict[str, Any], queue: str = "open", seconds: float = 2.0
) -> tuple[float, float]:
    """Renders of staff/queue.html per second on one core, from the board's first page read
    once (25 CaseLines, the counts, the doctors): the same context the route builds
    (core/pages/staff.py), with no database query; and the same with the holiday calendars
    cached (`holiday_calendars_cached`)."""
    from core import context
    from core.accounts.tables import User
    from core.app import create_app
    from core.cases import states
    from core.cases.service import CaseLine
    from core.pages.staff import DUE_FILTERS, QUEUES

    app = create_app(settings)
    template = app.template_engine.get_template("staff/queue.html")  # type: ignore[union-attr]
    rows: list[CaseLine] = board["received" if queue == "received" else "rows"]
    counts: dict[str, int] = board["counts"]
    doctors: list[dict] = board["doctors"]
    user = User(role="coordinator", full_name="Coordinator", email=COORDINATOR)
    kept = {"specialty": "", "doctor": "", "due": ""}
    values = dict(
        cases=rows,
        first_link=None,
        previous_link=None,
        next_link="/staff/cases?queue=open&after=MjAyNi0xMi0xNXwyNQ",
        counts=counts,
        tab_counts={
            key: sum(counts[s] for s in status) if isinstance(status, tuple) else counts[status]
            for key, (_, status, _) in QUEUES.items()
            if status is not None
        },
        board=states.ON_THE_CLOCK,
        status_labels=states.STAFF_STATUS,
        filters=kept,
        filtered=False,
        doctors=doctors,
        specialties=app.state.plugins.specialties(),
        due_filters=DUE_FILTERS,
        queue=queue,
        title=QUEUES[queue][0],
        order=QUEUES[queue][2],
        queues=QUEUES,
    )
    values |= {"request": _fake_request(app, user), "csrf_input": '<input type="hidden">'}

    def rate() -> float:
        html = template.render(**values)
        assert html.count('<a href="/staff/cases/') >= 25, "the ceiling page lists no cases"
        renders, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            template.render(**values)
            renders += 1
        return renders / (time.perf_counter() - started)

    with context.use(app.state.context):
        plain = rate()
        with holiday_calendars_cached():
            return plain, rate()


async def in_process(run: Run, staff: Staff, settings: Any, explain: bool) -> None:
    from core import db
    from core.accounts import service as accounts
    from core.accounts.tables import User
    from core.assignment import service as assignment
    from core.cases import service as cases
    from core.cases import states

    counted = [*states.ON_THE_CLOCK, states.SUBMITTED, states.DECLINED]
    run.board = {  # for the render-only ceiling: what the board's first page shows
        "rows": await cases.cases_in(states.ON_THE_CLOCK, limit=25),
        "received": await cases.cases_in(states.RECEIVED, limit=25),
        "counts": await cases.counts_in(counted),
        "doctors": await accounts.doctors(),
    }
    times = run.in_process_ms
    times["counts_in"] = await _timed(lambda: cases.counts_in(counted), 100)
    times["board query"] = await _timed(lambda: cases.cases_in(states.ON_THE_CLOCK, limit=26), 100)
    times["To assign query"] = await _timed(lambda: cases.cases_in(states.RECEIVED, limit=26), 100)
    for email, label in ((NEW, "doctor_cases, new"), (BUSY, "doctor_cases, busy")):
        doctor = await User.objects().where(User.id == staff.doctors[email][0]).first()
        times[label] = await _timed(lambda d=doctor: assignment.doctor_cases(d), 100)
    if explain:
        busy = staff.doctors[BUSY][0]
        for name, query in _queries().items():
            run.explain += await _explain(name, query, db.is_postgres(), busy)


# Over HTTP -----------------------------------------------------------------------------------


def staff_sign_in(base_url: str, email: str, secret: str) -> str:
    """A signed-in staff browser's Cookie header: password, then the TOTP code."""
    import httpx
    import pyotp

    def token(client: httpx.Client) -> str:
        return next(c.value for c in client.cookies.jar if c.name.endswith("csrftoken"))

    with httpx.Client(base_url=base_url) as client:
        client.get("/login")
        form = {"email": email, "password": PASSWORD}
        response = client.post("/login", data=form, headers={"x-csrftoken": token(client)})
        if response.status_code == 303 and response.headers["location"].startswith("/login/code"):
            code = {"code": pyotp.TOTP(secret).now()}
            response = client.post("/login/code", data=code, headers={"x-csrftoken": token(client)})
        if response.status_code != 303 or response.headers["location"].startswith("/login"):
            raise SystemExit(f"sign-in failed: {response.status_code} {response.text[:300]}")
        return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


def rows_on(base_url: str, path: str, cookie: str) -> int:
    """The table rows of a page, fetched once (and a check that it is the page, not a redirect)."""
    import httpx

    response = httpx.get(base_url + path, headers={"cookie": cookie}, timeout=120)
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code}")
    body = response.text.split("<tbody>", 1)[-1].split("</tbody>", 1)[0]
    return body.count("<tr>")


def over_http(run: Run, staff: Staff, var_dir: Path, log: Path, url: str, args: Any) -> None:
    extra = {"DATABASE_URL": url} if url else {}
    with serving(var_dir, log, **extra) as (base_url, server):
        coordinator = staff_sign_in(base_url, *staff.coordinator)
        busy = staff_sign_in(base_url, BUSY, staff.doctors[BUSY][2])
        new = staff_sign_in(base_url, NEW, staff.doctors[NEW][2])
        targets = {
            "static file": ("/static/app.css", ""),
            "board": ("/staff/cases?queue=open", coordinator),
            "To assign": ("/staff/cases?queue=received", coordinator),
            "doctor, 30 open": ("/dashboard", new),
            "doctor, 30 open + closed": ("/dashboard", busy),
        }
        for name, (path, cookie) in targets.items():
            if cookie:
                run.rows[name] = rows_on(base_url, path, cookie)
        wrk(base_url + targets["board"][0], server.pid, seconds=2, cookie=coordinator)  # warm
        for number, (name, (path, cookie)) in enumerate(targets.items()):
            spy_name = f"{run.engine}-{run.size}-{number}"
            with Spy(args.spy, server.pid, spy_name, gil=True):
                run.loads[name] = wrk(
                    base_url + path,
                    server.pid,
                    seconds=args.seconds,
                    connections=args.connections,
                    cookie=cookie,
                )
            load = run.loads[name]
            print(
                f"  {name}: {load.rate:,.1f} req/s, p99 {load.p99_ms:.0f} ms, "
                f"server CPU {load.cpu_ms_per_request:.1f} ms a request"
                + (f", {load.non_2xx} non-2xx" if load.non_2xx else ""),
                flush=True,
            )


# One run, and the whole ------------------------------------------------------------------------


def one_run(engine: str, size: int, args: Any, explain: bool) -> Run:
    run = Run(engine, size)
    with tempfile.TemporaryDirectory(prefix="consilium-queue-") as folder:
        var_dir = Path(folder) / "var"
        url = create_database(args.postgres) if engine == "postgres" else ""
        try:
            settings = bench_settings(var_dir, database_url=url or None)
            staff = asyncio.run(in_app_context(settings, _make_staff))

            async def last_user_id() -> int:
                from core.accounts.tables import User

                row = await User.select(User.id).order_by(User.id, ascending=False).first()
                return int(row["id"])

            first_user = asyncio.run(in_app_context(settings, last_user_id)) + 1
            started = time.perf_counter()
            seed = make_rows(size, staff, first_user, random.Random(size))
            if url:
                asyncio.run(insert_postgres(url, seed))
            else:
                insert_sqlite(settings.sqlite_path, seed, args.sqlite_analyze)
            run.seed_seconds = time.perf_counter() - started
            run.busy_closed = seed.busy_closed
            print(
                f"{engine}, {size:,} cases: seeded in {run.seed_seconds:.1f} s "
                f"({len(seed.cases):,} cases, {len(seed.offers):,} offers, "
                f"{len(seed.users):,} patients)",
                flush=True,
            )
            asyncio.run(in_app_context(settings, lambda: in_process(run, staff, settings, explain)))
            run.renders_per_second, run.renders_cached_holidays = asyncio.run(
                render_rate(settings, run.board)
            )
            run.assign_renders = asyncio.run(render_rate(settings, run.board, "received"))
            over_http(run, staff, var_dir, Path(folder) / "server.log", url, args)
        finally:
            if url:
                drop_database(url)
    return run


def create_database(admin_url: str) -> str:
    import asyncpg

    name = f"consilium_queue_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()

    asyncio.run(create())
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    import asyncpg

    admin_url, name = url.rsplit("/", 1)

    async def drop() -> None:
        connection = await asyncpg.connect(f"{admin_url}/postgres")
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()

    asyncio.run(drop())


def report(runs: list[Run], args: Any) -> None:
    targets = ["static file", "board", "To assign", "doctor, 30 open", "doctor, 30 open + closed"]
    print(
        f"\nwrk: 1 thread, {args.connections} connections, {args.seconds} s a target; "
        "req/s (p99 ms; server CPU ms a request) [rows on the page]"
    )
    print("| engine | cases | " + " | ".join(targets) + " | board / static | board / render |")
    print("|---|---|" + "---|" * (len(targets) + 2))
    for run in runs:
        cells = []
        for name in targets:
            load = run.loads.get(name)
            if load is None:
                cells.append("")
                continue
            text = f"{load.rate:,.1f} ({load.p99_ms:,.0f}; {load.cpu_ms_per_request:.1f})"
            if load.non_2xx:
                text += f" {load.non_2xx} non-2xx"
            if name in run.rows:
                text += f" [{run.rows[name]:,}]"
            cells.append(text)
        board, static = run.loads.get("board"), run.loads.get("static file")
        ratios = ["", ""]
        if board and static:
            ratios = [
                f"{board.rate / static.rate:.2f}",
                f"{board.rate / run.renders_per_second:.2f}",
            ]
        print(f"| {run.engine} | {run.size:,} | " + " | ".join(cells + ratios) + " |")
    print(
        "\nIn process, ms per call (100 calls, or as many as fit in 5 s); the render-only "
        "ceiling: staff/queue.html from 25 CaseLines, renders/s on one core"
    )
    names = list(runs[0].in_process_ms) if runs else []
    print(
        "| engine | cases | seed s | busy doctor's closed cases | "
        + " | ".join(names)
        + " | board renders/s | the same, holiday calendars cached "
        + "| To assign renders/s | the same, cached |"
    )
    print("|---|---|---|---|" + "---|" * (len(names) + 4))
    for run in runs:
        print(
            f"| {run.engine} | {run.size:,} | {run.seed_seconds:.1f} | {run.busy_closed:,} | "
            + " | ".join(f"{run.in_process_ms[n]:.2f}" for n in names)
            + f" | {run.renders_per_second:,.0f} | {run.renders_cached_holidays:,.0f} "
            + f"| {run.assign_renders[0]:,.0f} | {run.assign_renders[1]:,.0f} |"
        )
    print()
    for engine in dict.fromkeys(run.engine for run in runs):
        mine = [run for run in runs if run.engine == engine and "board" in run.loads]
        if len(mine) < 2:
            continue
        small, large = min(mine, key=lambda r: r.size), max(mine, key=lambda r: r.size)
        for name in targets[1:]:
            ratio = large.loads[name].rate / small.loads[name].rate
            goal = ""
            if name == "board":
                met = "met" if ratio >= BOARD_RATE_FLOOR else "MISSED"
                goal = f" (goal >= {BOARD_RATE_FLOOR}): {met}"
            print(
                f"{engine}: {name} req/s at {large.size:,} / at {small.size:,}: {ratio:.2f}{goal}"
            )
    for run in runs:
        if run.explain:
            print(f"\nEXPLAIN, {run.engine}, {run.size:,} cases:")
            print("\n".join(run.explain))
    if args.spy:
        for run in runs:
            for number, name in enumerate(run.loads):
                profile = args.spy / f"{run.engine}-{run.size}-{number}.txt"
                if profile.exists():
                    print(f"\nWhere the server's time went, {run.engine} {run.size:,} {name}:")
                    for own, total, frame in top_of(profile, 10):
                        print(f"  {own:6.1%} (with callees {total:6.1%})  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="cases, comma-separated")
    parser.add_argument("--engines", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--seconds", type=int, default=10, help="wrk's run per target")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="where databases are made")
    parser.add_argument(
        "--sqlite-analyze",
        action="store_true",
        help="ANALYZE SQLite after seeding (the app never does)",
    )
    parser.add_argument("--spy", type=Path, default=None, help="py-spy the server, per target")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    engines = [engine.strip() for engine in args.engines.split(",")]
    if unknown := set(engines) - {"sqlite", "postgres"}:
        raise SystemExit(f"unknown engine(s): {', '.join(sorted(unknown))}")
    if args.spy:
        args.spy.mkdir(parents=True, exist_ok=True)
    runs = []
    for engine in engines:
        for size in sizes:
            runs.append(one_run(engine, size, args, explain=size == max(sizes)))
    report(runs, args)


if __name__ == "__main__":
    main()

"""Report PDFs: what each step costs, and whether pages stay quick while reports render. Not a
test: it prints figures.

    .venv/bin/python bench/reports.py                 # 10 runs a step; 3 rounds, 200 requests
    .venv/bin/python bench/reports.py --quick         # a smoke run (3 runs; 1 round of 40)
    .venv/bin/python bench/reports.py --server-only --gc-freeze --no-inline   # part 2 only

Part 1, in the bench's own process (direct calls, no server): for each built-in specialty
(radiology, pathology, surgical, general) a long signed report: the specialty's review values of
tests/test_report_templates.py (`SAMPLES`, validated by the plugin's form) with long core parts
(three questions answered, six materials, a colleague's comment, limitations, pending tests,
"What this means for you"), built by tests/report_support.py's `view_for`. Timed `--runs`
times each, median / max in ms, after one untimed warm-up (the first WeasyPrint call of a
process imports it and reads the fonts: printed apart):

- terms: the glossary's terms the report uses (`render.terms_used`: a regular expression per
  spelling over the report's text), the one costly part of the view `build_view` makes;
- render: the HTML with Jinja (`render.render_document` through `html_of`, as the service);
- PDF: WeasyPrint (`core.pdf.html_to_pdf`);
- sign: pyHanko PAdES (`signing.sign_pdf`, with the development key that
  `signing.load_material` makes in a temporary var dir);

and the signed PDF's pages and size. Then the whole pipeline as the service runs it,
`worker.signed_pdf` (a spawned process pool of one): its first call (the pool starts and
imports WeasyPrint and pyHanko), then `--runs` calls, against PDF + sign in process (the
difference is the pickling and the hop to the worker). Last, `reports.produce` four at once in
the bench's process (SQLite in a temporary var dir, the pool of one), each stretch it runs
without giving the event loop back timed (`Stepped`): how long the loop is held per report, in
how many steps, and the longest steps by their lines in core/reports/service.py.

Part 2, a real server: uvicorn in a subprocess on SQLite (a temporary var dir), as `make run`
serves it, with the default `report_workers` (1; `--workers` changes it). Seeded beforehand
through the services and direct rows, as bench/review.py does: a doctor per specialty (with
their registration), a patient whose cases were signed, each with its `SignedReview` (the same
long values as part 1), its `Report` and a `pending` `ReportVersion` (what signing leaves for
the PDF to be made), and a second patient with three cases of their own. The `issue_reports`
job is put off for the run, so that the server does not issue the versions by itself.

Two pages are timed in turn, one request after the other, `--requests` of each:
`GET /login` (anonymous: the middleware, the session and CSRF cookies, the sign-in form in the
layout; about 1 ms) and `GET /dashboard` signed in as the second patient (the session, the
user, their cases' query, the page; a few ms). Each round (`--rounds`):

- idle: nothing else runs (the pool is started: one report was made before the first round);
- loaded: four reports being made at once in that server all along: four threads each post
  `/bench/produce?uid=…` and the next as soon as theirs is made (the four specialties in turn).
  The window starts 0.3 s in and lasts `--requests` requests and until `--reports` reports were
  issued inside it; the bench prints how many were issued and being made in it, and the pool
  process's CPU, so the load is shown to be real;
- idle after, as many requests as the loaded window: how much the machine itself moved.

Besides the latencies: the server's event-loop lag (a task in the server sleeps 5 ms again and
again; how late it wakes, p99 and max, is how long the loop was held) and its longest garbage
collection (`gc.callbacks`), read through `/bench/lag`; the CPU of the server process and of
its children (the report pool) from /proc, as a share of one core.

`/bench/produce`, `/bench/inline` and `/bench/lag` are not in the app: the server's ASGI app is
a small wrapper defined here (as bench/documents.py does) that sends every other path to
`create_app()`. `/bench/produce` awaits `reports.produce(uid)` in the app's context, exactly
what the signing request awaits after its commit (`db.on_commit(produce_quietly)`): the view
built from the database and the HTML rendered on the event loop, the PDF made and signed in
the worker pool, sealed and stored, the version marked issued, audited, the patient told. Four
at once are four doctors signing at once. Why not the real paths: the admin's "run now" of
`issue_reports` makes pending versions one after the other (it is the retry path), and signing
over HTTP needs a draft that validates and each doctor's password and a fresh TOTP code for
every signature; neither changes what the server does while the PDFs are made.

After the rounds, a control: a process outside the server makes the same report's PDF again
and again (one core busy, as the pool keeps it, and nothing in the server) while the pages are
timed, as many requests as the last loaded window: what the CPU taken away costs alone, apart
from the server's own work for the reports.

For contrast, `/bench/inline?uid=…` makes a report's PDF as `produce` would but with WeasyPrint
on the event loop itself (no pool; not signed: pyHanko's synchronous `sign_pdf` starts an event
loop of its own, which cannot run inside one; nothing stored), four at once, while the pages
are timed again (at most 40 requests each: a request may wait for whole renders).

`--gc-freeze` calls `gc.collect(); gc.freeze()` in the server once it is warm (at the first
`/bench/lag`), as the app's start could: the collector no longer walks what was alive then.

Goal (issue 16): a plain page's p99 while four reports render at once is below 2x its idle
p99, idle being the windows before and after the loaded one: PASS / MISS per page, for each
round and for all rounds together. Client, server and worker share the machine's cores: the
loaded figures include the CPU the worker takes from the others (the control shows how much).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (
    PASSWORD,
    ROOT,
    bench_settings,
    cpu_seconds,
    in_app_context,
    serving,
    sign_in,
)

BENCH = Path(__file__).resolve().parent
GOAL = 2.0  # loaded p99 below this many times the idle p99
SLUGS = ("radiology", "pathology", "surgical", "general")
SIGN_IN_PAGE = "/login"  # anonymous: the sign-in form in the layout
DASHBOARD = "/dashboard"  # a patient's home: their cases, signed in
READER = "reader@bench.example"  # the patient whose dashboard is timed (not the reports')
INLINE_REQUESTS = 40  # the contrast window: each request may wait a whole render

# The core parts of every report (what every specialty's report carries), long as a real one.
QUESTIONS = [
    "Do you agree with the diagnosis my doctors made?",
    "Is the treatment they propose the right one for me, or is there an alternative?",
    "Do I need more tests before deciding, and how soon should I act?",
]
ANSWERS = [
    (
        "In part. The main diagnosis is supported by the records and the material reviewed. "
        "One detail differs, explained in the specialist's opinion below; it does not change "
        "the diagnosis itself, but your doctors should know of it when they plan your care."
    ),
    (
        "Yes, the proposed treatment follows current guidelines for your condition. The "
        "alternatives, with their benefits and risks, are set out below so that you can discuss "
        "them with your doctor. None of them is clearly better for you than the plan you have."
    ),
    (
        "One further test is recommended (see 'Limitations and tests still pending'). It can be "
        "done at your next visit and should not delay the plan by more than two weeks. Please "
        "do not stop any treatment you are on while you wait for it."
    ),
]
MATERIALS = [
    "Original report (PDF), City Hospital, 14 February 2026",
    "Referral letter from the treating consultant (PDF)",
    "Laboratory results, January to March 2026 (PDF, 6 pages)",
    "Series 2: AX T2 (MR, 24 images)",
    "Series 5: COR post-contrast (MR, 96 images)",
    "Discharge summary, admission of 3 March 2026 (PDF)",
]
SUMMARY = (
    "The specialist reviewed all the records you sent and agrees with the main diagnosis your "
    "doctors made. One detail is different, and it is explained in the report below.\n\n"
    "The treatment your doctors propose is the one most specialists would recommend. There are "
    "alternatives, and the report describes them with their benefits and risks, so that you "
    "can talk them through with your doctor.\n\n"
    "One more test would help before you decide. It is a simple test and it should not delay "
    "your care. Take this report to your next appointment, and ask your doctor to explain "
    "anything that is not clear. If your symptoms get worse before then, do not wait: contact "
    "your doctor or the hospital."
)
LIMITATIONS = ["records_only", "missing"]
LIMITATIONS_COMMENT = (
    "The patient was not examined. The images of the earlier study (2025) were available as a "
    "report only, so the comparison relies on that report's description."
)
PENDING_TESTS = (
    "The result of the repeat blood test taken on 2 April 2026 was not yet available. A clearly "
    "abnormal result would make the further test more urgent, not change the diagnosis."
)
COLLEAGUE = {
    "name": "Dr. Imran Qureshi",
    "title": "Consultant, second reader",
    "concurs": "yes",
    "comment": (
        "I reviewed the same material independently and agree with the opinion, including the "
        "difference from the original report and the recommendation for a further test."
    ),
}


def _values(slug: str) -> dict[str, Any]:
    """The specialty's realistic review values (tests/test_report_templates.py), validated."""
    from tests.test_report_templates import SAMPLES, SPECIALTIES, values_of

    return values_of(SPECIALTIES[slug], SAMPLES[slug])


def _agreement(slug: str) -> str:
    from core.specialty import DIFFERS, DIFFERS_IN_DETAIL

    return DIFFERS if slug == "radiology" else DIFFERS_IN_DETAIL


def _core_values(slug: str) -> dict[str, Any]:
    return {
        "agreement": _agreement(slug),
        "management_change": "no",
        "patient_summary": SUMMARY,
        "limitations": LIMITATIONS,
        "limitations_comment": LIMITATIONS_COMMENT,
        "pending_tests": PENDING_TESTS,
    }


def _answers() -> list[dict[str, str]]:
    return [{"label": q, "text": a} for q, a in zip(QUESTIONS, ANSWERS, strict=True)]


def _ms(seconds: list[float]) -> tuple[float, float]:
    return statistics.median(seconds) * 1000, max(seconds) * 1000


def _quantiles(values: list[float], qs: tuple[int, ...]) -> list[float]:
    if len(values) < 2:
        return [values[0] for _ in qs]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return [cuts[q - 1] for q in qs]


def _p(values: list[float], q: int) -> float:
    return _quantiles(values, (q,))[0]


# Part 1: in process ----------------------------------------------------------------------------


def _timed(call: Any, runs: int) -> tuple[list[float], Any]:
    took, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        took.append(time.perf_counter() - started)
    return took, result


def _view(slug: str, host: Any) -> Any:
    """The long report of `slug` as a ReportView, without a database."""
    from core.reports import render
    from tests.report_support import view_for

    return view_for(
        host.specialty(slug),
        _values(slug),
        agreement=_agreement(slug),
        materials=MATERIALS,
        answers=_answers(),
        summary=SUMMARY,
        management_words=render.MANAGEMENT_FOR_PATIENTS["no"],
        limitations=[render.LIMITATION_WORDS[v] for v in LIMITATIONS],
        limitations_comment=LIMITATIONS_COMMENT,
        pending_tests=PENDING_TESTS,
        colleagues=[{**COLLEAGUE, "concurs": render.COLLEAGUE_WORDS["yes"]}],
    )


def in_process(runs: int) -> None:
    from pypdf import PdfReader

    from core.pdf import html_to_pdf
    from core.plugins import PluginHost
    from core.reports import render, signing, worker
    from tests.report_support import html_of

    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp))
        host = PluginHost.load(settings)
        material = signing.load_material(settings)
        reason = {"reason": "Second opinion report R-7K3M-9QXD-2HPA, version 1"}
        reason["location"] = settings.hospital_name
        htmls: dict[str, str] = {}
        jobs: dict[str, worker.Job] = {}
        steps: dict[str, tuple[float, float]] = {}

        started = time.perf_counter()
        html_to_pdf("<p>warm</p>")
        print(
            f"first WeasyPrint call of the process (import, fonts): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
        print()
        header = (
            f"{'specialty':<11}{'terms ms':>14}{'render ms':>14}{'PDF ms':>16}{'sign ms':>16}"
            f"{'pages':>7}{'KiB':>7}{'HTML KiB':>10}"
        )
        print(f"in process, {runs} runs a step (median / max)")
        print(header)
        for slug in SLUGS:
            specialty = host.specialty(slug)
            view = _view(slug, host)
            html = html_of(view, specialty, host)  # warm: templates compiled
            pdf = html_to_pdf(html)
            signing.sign_pdf(pdf, material, **reason)
            texts = render._texts(view)
            terms, _ = _timed(lambda: render.terms_used(specialty.glossary, texts), runs)  # noqa: B023
            rendering, html = _timed(lambda: html_of(view, specialty, host), runs)  # noqa: B023
            making, pdf = _timed(lambda: html_to_pdf(html), runs)  # noqa: B023
            signed_took, signed = _timed(
                lambda: signing.sign_pdf(pdf, material, **reason),  # noqa: B023
                runs,
            )
            pages = len(PdfReader(io.BytesIO(signed)).pages)
            htmls[slug] = html
            jobs[slug] = worker.Job(
                view=view,
                folders=render.template_folders(host),
                specialty_template=specialty.report_template,
                glossary=specialty.glossary,
                verify_url="https://consilium.invalid/verify",
                **reason,
            )
            steps[slug] = (statistics.median(making), statistics.median(signed_took))
            cells = [
                "{:.1f} / {:.1f}".format(*_ms(took))
                for took in (terms, rendering, making, signed_took)
            ]
            print(
                f"{slug:<11}{cells[0]:>14}{cells[1]:>14}{cells[2]:>16}{cells[3]:>16}"
                f"{pages:>7}{len(signed) / 1024:>7.0f}{len(html) / 1024:>10.0f}"
            )

        async def pipeline() -> tuple[float, list[float]]:
            started = time.perf_counter()
            await worker.signed_pdf(jobs["radiology"], material)
            cold = time.perf_counter() - started
            took = []
            for _ in range(runs):
                started = time.perf_counter()
                await worker.signed_pdf(jobs["radiology"], material)
                took.append(time.perf_counter() - started)
            return cold, took

        try:
            cold, took = asyncio.run(pipeline())
        finally:
            worker.shutdown()
        median, worst = _ms(took)
        direct = sum(steps["radiology"]) * 1000
        print(
            f"pipeline, radiology, worker.signed_pdf (pool of 1): first call {cold * 1000:.0f} ms "
            f"(spawn + imports), then {median:.0f} / {worst:.0f} ms; in process PDF + sign "
            f"{direct:.0f} ms: overhead {median - direct:+.0f} ms"
        )


class Stepped:
    """Awaits a coroutine and times each of its steps: the stretches it runs without giving the
    event loop back, by where in `core/reports/service.py` it resumed and stopped."""

    def __init__(self, coro: Any, steps: dict[str, list[float]]) -> None:
        self.coro, self.steps = coro, steps

    def _where(self) -> str:
        frame = self.coro.cr_frame
        return str(frame.f_lineno) if frame is not None else "end"

    def __await__(self) -> Any:
        inner = self.coro.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            start, started = self._where(), time.perf_counter()
            try:
                yielded = inner.throw(error) if error is not None else inner.send(value)
            except StopIteration as stop:
                self.steps[f"{start}-end"].append(time.perf_counter() - started)
                return stop.value
            self.steps[f"{start}-{self._where()}"].append(time.perf_counter() - started)
            value, error = None, None
            try:
                value = yield yielded
            except BaseException as thrown:  # handed back to the coroutine, as a Task would
                error = thrown


def loop_steps(rounds: int = 3) -> None:
    """`reports.produce` four at once in this process (SQLite, a pool of one), each step timed:
    the event loop's share of a report."""
    from collections import defaultdict

    from core.reports import service, worker

    steps: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        seeded = asyncio.run(_seed(var_dir, rounds + 1))

        async def work() -> None:
            try:
                await service.produce(uuid.UUID(seeded[0][0]))  # the pool starts
                await asyncio.gather(*(service.produce(uuid.UUID(u)) for u in seeded[1]))
                for batch in seeded[2:]:
                    made = [Stepped(service.produce(uuid.UUID(u)), steps) for u in batch]
                    await asyncio.gather(*made)
            finally:
                worker.shutdown()

        asyncio.run(in_app_context(bench_settings(var_dir), work))
    reports = len(steps.get(next(k for k in steps if k.endswith("-end")), []))
    held = sum(sum(v) for v in steps.values()) / reports
    count = sum(len(v) for v in steps.values()) / reports
    print(
        f"produce(), four at once, {reports} reports: the event loop held {held * 1000:.1f} ms a "
        f"report in {count:.0f} steps; the longest (service.py lines: median / max ms):"
    )
    ranked = sorted(steps.items(), key=lambda item: -statistics.median(item[1]))[:3]
    print("   " + "; ".join(f"{k}: {_ms(v)[0]:.2f} / {_ms(v)[1]:.2f}" for k, v in ranked))


# Part 2, the server side: a wrapper ASGI app (uvicorn imports it in the subprocess) -------------


async def _answer(send: Any, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _inline(uid: uuid.UUID) -> int:
    """A report's PDF made ON the event loop (the contrast): the view and HTML as `produce`
    makes them, then WeasyPrint in the loop's own thread. Not signed (pyHanko's synchronous
    `sign_pdf` runs its own event loop, which cannot start inside a running one) and not
    stored: the PDF's size is the answer."""
    from core import context
    from core.cases.tables import Case
    from core.pdf import html_to_pdf
    from core.reports import render
    from core.reports.tables import Report, ReportVersion
    from core.reviews.tables import SignedReview

    ctx = context.current()
    row = await ReportVersion.objects().where(ReportVersion.uid == uid).first()
    case = await Case.objects().where(Case.id == row.case).first()
    report = await Report.objects().where(Report.id == row.report).first()
    reviews = await SignedReview.objects().where(SignedReview.case == row.case)
    specialty = ctx.plugins.specialty(case.specialty)
    view = await render.build_view(case, report.number, reviews, specialty, ctx.settings)
    html = render.render_document(view, specialty, ctx.plugins, verify_url="http://x/verify")
    return len(html_to_pdf(html))


class LoopLag:
    """How late the server's event loop wakes a task that sleeps `TICK` (its lag: a loop
    blocked for 50 ms wakes it up to 50 ms late), and the longest garbage collection, since the
    last `read()`. Started by the first `/bench/lag`."""

    TICK = 0.005

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.task: asyncio.Task | None = None
        self.gc_started = 0.0
        self.gc_longest = 0.0

    async def _watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.TICK)
            self.lags.append(time.perf_counter() - started - self.TICK)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc_started = time.perf_counter()
        else:
            self.gc_longest = max(self.gc_longest, time.perf_counter() - self.gc_started)

    def read(self) -> str:
        """ "p50 p99 max gc" in ms since the last read (and start watching)."""
        if self.task is None:
            loop = asyncio.get_running_loop()
            self.task = loop.create_task(self._watch())
            gc.callbacks.append(self._gc)
            if os.environ.get("BENCH_GC_FREEZE"):  # --gc-freeze: what lives now is never
                gc.collect()  # collected again, as `gc.freeze()` after the app's start would do
                gc.freeze()
        lags, self.lags = self.lags, []
        longest, self.gc_longest = self.gc_longest, 0.0
        if len(lags) < 2:
            return "0 0 0 0"
        found = (*_quantiles(lags, (50, 99)), max(lags), longest)
        return " ".join(f"{x * 1000:.2f}" for x in found)


def bench_app() -> Any:
    """uvicorn factory: the real app, with /bench/produce, /bench/inline and /bench/lag in front
    of it."""
    from core import context
    from core.app import create_app
    from core.reports import service as reports
    from core.settings import load_settings

    inner = create_app(load_settings())
    lag = LoopLag()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/bench/"):
            await inner(scope, receive, send)
            return
        if path == "/bench/lag":
            await _answer(send, 200, lag.read())
            return
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if p)
        uid = uuid.UUID(query["uid"])
        started = time.perf_counter()
        with context.use(inner.state.context):
            if path == "/bench/produce":
                result = int(await reports.produce(uid))
            else:
                result = await _inline(uid)
        await _answer(send, 200, f"{result} {time.perf_counter() - started:.4f}")

    return app


# Part 2, the bench side -----------------------------------------------------------------------


async def _seed(var_dir: Path, batches: int) -> list[list[str]]:
    """`batches` lists of four pending version uids (one per specialty), plus a first list of
    one (the warm-up report)."""
    from core import clock, context
    from core.accounts import service as accounts
    from core.accounts.tables import DoctorProfile
    from core.cases import service as cases
    from core.cases import states
    from core.cases.tables import Case
    from core.forms import StoredAnswers
    from core.reports.tables import Report, ReportVersion
    from core.reports.verification import new_report_number
    from core.reviews.service import _signed_row
    from core.reviews.tables import SignedReview
    from core.schedule.tables import ScheduledJob

    values = {slug: _values(slug) for slug in SLUGS}

    async def make() -> list[list[str]]:
        plugins = context.plugins()
        known = {s.slug for s in plugins.specialties()}
        # The periodic job would issue the seeded versions by itself a minute in: put it off.
        await ScheduledJob.insert(
            ScheduledJob(name="issue_reports", next_run_at=clock.now() + timedelta(days=1))
        )
        doctors = {}
        for slug in SLUGS:
            doctor = await accounts.create_staff(
                email=f"{slug}@bench.example",
                full_name=f"Dr. {slug.title()} Bench",
                role="doctor",
                specialties=[slug],
                known_specialties=known,
                by=None,
                password=PASSWORD,
            )
            profile = DoctorProfile(
                doctor=doctor.id,
                title=f"Consultant ({slug})",
                registration_number="PMDC-12345-P",
                registering_body="Pakistan Medical and Dental Council",
            )
            await DoctorProfile.insert(profile)
            doctors[slug] = (doctor, profile)
        await accounts.register_patient(
            email="patient@bench.example",
            password=PASSWORD,
            full_name="Amina Rahman",
            phone="",
            country="PK",
            ip=None,
        )
        patient = await accounts.get_user_by_email("patient@bench.example")
        await accounts.register_patient(
            email=READER,
            password=PASSWORD,
            full_name="Bilal Ahmed",
            phone="",
            country="PK",
            ip=None,
        )
        reader = await accounts.get_user_by_email(READER)
        for slug in SLUGS[1:]:  # three requests of their own, not yet sent
            await cases.start_request(reader, plugins.specialty(slug), ip=None)
        uids: list[list[str]] = []
        for batch in range(batches + 1):
            uids.append([])
            for slug in SLUGS[: 1 if batch == 0 else 4]:
                specialty = plugins.specialty(slug)
                doctor, profile = doctors[slug]
                case = await cases.start_request(patient, specialty, ip=None)
                await Case.update(
                    {
                        Case.status: states.REPORT_READY,
                        Case.assigned_doctor: doctor.id,
                        Case.questions: json.dumps(QUESTIONS),
                        Case.subject_kind: "self",
                        Case.subject_birth_date: date(1961, 3, 4),
                        Case.subject_sex: "female",
                    }
                ).where(Case.id == case.id)
                core = _core_values(slug)
                content = {
                    "specialty": StoredAnswers.capture(specialty.review, values[slug]).as_json(),
                    "core": {"version": 1, "values": core, "summary": []},
                    "materials": MATERIALS,
                    "answers": _answers(),
                    "conclusions": [],
                    "colleagues": [COLLEAGUE],
                    "entries": {},
                }
                review = _signed_row(
                    case,
                    doctor,
                    profile,
                    1,
                    content,
                    form_version=specialty.review.version,
                    agreement=core["agreement"],
                )
                await SignedReview.insert(review)
                report = Report(uid=uuid.uuid4(), case=case.id, number=new_report_number())
                await Report.insert(report)
                version = ReportVersion(
                    uid=uuid.uuid4(),
                    report=report.id,
                    case=case.id,
                    version=1,
                    kind="report",
                    review=review.id,
                    status="pending",
                    created_at=clock.now(),
                )
                await ReportVersion.insert(version)
                uids[-1].append(str(version.uid))
        return uids

    return await in_app_context(bench_settings(var_dir), make)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            pass
    return found


def _workers_cpu(pid: int) -> float:
    """CPU seconds of the server's child processes (the report pool; its resource tracker)."""
    total = 0.0
    for child in _children(pid):
        try:
            total += cpu_seconds(child)
        except FileNotFoundError:
            pass
    return total


@dataclass
class Made:
    uid: str
    started: float
    ended: float
    result: int
    server_seconds: float


@dataclass
class Renders:
    """Four reports at once, in four threads: each posts the next one as soon as its last is
    made, until `stop` is set (or the seeded versions run out)."""

    base_url: str
    path: str
    uids: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    made: list[Made] = field(default_factory=list)
    ran_out: bool = False
    threads: list[threading.Thread] = field(default_factory=list)
    running: int = 0

    @property
    def idle(self) -> bool:
        return self.running == 0

    def _one(self, uid: str) -> Made:
        import httpx

        started = time.perf_counter()
        response = httpx.post(f"{self.base_url}{self.path}?uid={uid}", timeout=600)
        response.raise_for_status()
        result, seconds = response.text.split()
        return Made(uid, started, time.perf_counter(), int(result), float(seconds))

    def _run(self, todo: queue.SimpleQueue[str]) -> None:
        while not self.stop.is_set():
            try:
                uid = todo.get_nowait()
            except queue.Empty:
                self.ran_out = True
                return
            with self.lock:
                self.running += 1
            try:
                self.made.append(self._one(uid))
            finally:
                with self.lock:
                    self.running -= 1

    def __enter__(self) -> Renders:
        todo: queue.SimpleQueue[str] = queue.SimpleQueue()
        for uid in self.uids:
            todo.put(uid)
        self.threads = [
            threading.Thread(target=self._run, args=(todo,), daemon=True) for _ in range(4)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


@dataclass
class Window:
    took: dict[str, list[float]]  # ms a request, by page
    seconds: float
    lag: tuple[float, float, float, float]  # server loop's lag p50, p99, max; longest GC (ms)
    worker_cpu: float  # CPU seconds of the report pool in the window
    server_cpu: float
    made: list[Made] = field(default_factory=list)  # reports finished in the window
    overlapping: int = 0  # reports being made at some time in the window
    ran_out: bool = False

    def p50(self, page: str) -> float:
        return statistics.median(self.took[page])

    def p99(self, page: str) -> float:
        return _p(self.took[page], 99)


@dataclass(frozen=True)
class Page:
    label: str
    path: str
    cookie: str = ""


def _plain(
    client: Any, pages: list[Page], count: int, more: Any = lambda start: False
) -> tuple[dict[str, list[float]], float, float]:
    """The pages in turn, one request after the other, `count` each, and more while
    `more(start)` says so."""
    took: dict[str, list[float]] = {page.label: [] for page in pages}
    first = time.perf_counter()
    done = 0
    while done < count or more(first):
        for page in pages:
            headers = {"cookie": page.cookie} if page.cookie else {}
            started = time.perf_counter()
            response = client.get(page.path, headers=headers)
            took[page.label].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (page.path, response.status_code)
        done += 1
    return took, first, time.perf_counter()


def _lag(client: Any) -> tuple[float, float, float, float]:
    p50, p99, worst, gc_pause = (float(x) for x in client.get("/bench/lag").text.split())
    return p50, p99, worst, gc_pause


def _window(
    client: Any,
    server_pid: int,
    pages: list[Page],
    count: int,
    renders: Renders | None = None,
    reports: int = 0,
) -> Window:
    """The pages timed `count` times each; with `renders`, while they run, and on until
    `reports` of them finished inside the window."""

    def more(start: float) -> bool:
        if renders is None:
            return False
        finished = sum(1 for m in list(renders.made) if m.ended >= start)
        return finished < reports and not (renders.ran_out and renders.idle)

    with renders or contextlib.nullcontext():
        if renders is not None:
            time.sleep(0.3)  # the first four are on their way: their views built, the pool busy
        _lag(client)
        cpu_before, workers_before = cpu_seconds(server_pid), _workers_cpu(server_pid)
        took, start, end = _plain(client, pages, count, more)
        worker_cpu = _workers_cpu(server_pid) - workers_before
        server_cpu = cpu_seconds(server_pid) - cpu_before
        lag = _lag(client)
        ran_out = renders is not None and renders.ran_out
    window = Window(took, end - start, lag, worker_cpu, server_cpu, ran_out=ran_out)
    if renders is not None:
        window.made = [m for m in renders.made if start <= m.ended <= end]
        window.overlapping = sum(1 for m in renders.made if m.started < end and m.ended > start)
    return window


COLUMNS = (
    ("reqs", 6),
    ("p50", 7),
    ("p99", 7),
    ("max", 8),
    ("s", 6),
    ("lag99", 7),
    ("lagmax", 7),
    ("gc", 6),
    ("server", 8),
    ("pool", 7),
    ("made", 5),
)
NAME = 34
HEADER = "window".ljust(NAME) + "".join(name.rjust(width) for name, width in COLUMNS)


def _row(name: str, window: Window, page: str) -> str:
    cells = [
        str(len(window.took[page])),
        f"{window.p50(page):.1f}",
        f"{window.p99(page):.1f}",
        f"{max(window.took[page]):.1f}",
        f"{window.seconds:.1f}",
        f"{window.lag[1]:.1f}",
        f"{window.lag[2]:.1f}",
        f"{window.lag[3]:.1f}",
        f"{window.server_cpu / window.seconds:.0%}",
        f"{window.worker_cpu / window.seconds:.0%}",
        str(len(window.made)) if window.made else "",
    ]
    return name.ljust(NAME) + "".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True))


BURNER = """import sys
from core.pdf import html_to_pdf
html = open(sys.argv[1]).read()
html_to_pdf(html)
print("ready", flush=True)
while True:
    html_to_pdf(html)
"""


def _burner(var_dir: Path) -> subprocess.Popen:
    """A process outside the server making report PDFs from HTML without a pause: the CPU
    load of the report pool, with nothing in the server (the control)."""
    from core.plugins import PluginHost
    from tests.report_support import html_of

    host = PluginHost.load(bench_settings(var_dir))
    path = var_dir / "control.html"
    path.write_text(html_of(_view("radiology", host), host.specialty("radiology"), host))
    burner = subprocess.Popen(
        [sys.executable, "-c", BURNER, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert burner.stdout is not None and burner.stdout.readline().strip() == "ready"
    return burner


def _summary(idle: list[float], loaded: list[float]) -> str:
    ratio = _p(loaded, 99) / _p(idle, 99)
    return (
        f"idle p50 / p99 {statistics.median(idle):.1f} / {_p(idle, 99):.1f} ms ({len(idle)}), "
        f"loaded {statistics.median(loaded):.1f} / {_p(loaded, 99):.1f} ms ({len(loaded)}): "
        f"p99 {ratio:.2f}x (goal < {GOAL:.0f}x) {'PASS' if ratio < GOAL else 'MISS'}"
    )


def served(args: argparse.Namespace) -> None:
    import httpx

    per_round = args.reports + 8  # what a window makes, the four in flight at its end, spare
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        started = time.perf_counter()
        seeded = asyncio.run(_seed(var_dir, -(-args.rounds * per_round // 4)))
        warm_up, pending = seeded[0][0], [uid for batch in seeded[1:] for uid in batch]
        print(
            f"seeded {len(pending) + 1} signed cases with pending report versions in "
            f"{time.perf_counter() - started:.1f} s"
        )
        env = {"app": "reports:bench_app", "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
        if args.workers:
            env["CONSILIUM_REPORT_WORKERS"] = str(args.workers)
        if args.gc_freeze:
            env["BENCH_GC_FREEZE"] = "1"
        results: list[tuple[Window, Window, Window]] = []
        contrast = None
        with serving(var_dir, var_dir / "server.log", **env) as (base_url, server):
            pages = [
                Page(SIGN_IN_PAGE, SIGN_IN_PAGE),
                Page(DASHBOARD, DASHBOARD, sign_in(base_url, READER)),
            ]
            with httpx.Client(base_url=base_url, timeout=600) as client:
                started = time.perf_counter()
                first = client.post(f"/bench/produce?uid={warm_up}")
                assert first.text.split()[0] == "1", (first.status_code, first.text[:500])
                print(
                    f"first report in the server (the pool starts): "
                    f"{(time.perf_counter() - started) * 1000:.0f} ms"
                )
                _plain(client, pages, 30)  # warm the pages
                for number in range(args.rounds):
                    mine = pending[number * per_round : (number + 1) * per_round]
                    idle = _window(client, server.pid, pages, args.requests)
                    renders = Renders(base_url, "/bench/produce", mine)
                    loaded = _window(
                        client, server.pid, pages, args.requests, renders, args.reports
                    )
                    after = _window(client, server.pid, pages, len(loaded.took[SIGN_IN_PAGE]))
                    results.append((idle, loaded, after))
                burner = _burner(var_dir)
                try:
                    before = cpu_seconds(burner.pid)
                    count = len(results[-1][1].took[SIGN_IN_PAGE])
                    control = _window(client, server.pid, pages, count)
                    control.worker_cpu = cpu_seconds(burner.pid) - before
                finally:
                    burner.kill()
                    burner.wait()
                if not args.no_inline:
                    renders = Renders(base_url, "/bench/inline", pending * 4)
                    count = min(args.requests, INLINE_REQUESTS)
                    contrast = _window(client, server.pid, pages, count, renders, 4)
            log = (var_dir / "server.log").read_text()

    print()
    print(
        "Each page in turn, one request after the other: latency in ms; the server loop's lag "
        "(p99, max) and longest garbage collection in ms; CPU of the server and of the report "
        "pool as a share of one core; reports made in the window."
    )
    summaries = []
    for page in (SIGN_IN_PAGE, DASHBOARD):
        print()
        print(
            f"GET {page}" + (" (a signed-in patient's home, 3 cases)" if page == DASHBOARD else "")
        )
        print(HEADER)
        for number, (idle, loaded, after) in enumerate(results, start=1):
            print(_row(f"{number}. idle", idle, page))
            print(_row(f"{number}. four rendering at once", loaded, page))
            print(_row(f"{number}. idle after (as many)", after, page))
            line = _summary(idle.took[page] + after.took[page], loaded.took[page])
            print(f"   {line}")
        print(_row("a core busy outside (control)", control, page))
        if contrast is not None:
            print(_row("render ON the loop (contrast)", contrast, page))
        idle_all = [x for i, _, a in results for x in i.took[page] + a.took[page]]
        loaded_all = [x for _, loaded, _ in results for x in loaded.took[page]]
        summaries.append((page, _summary(idle_all, loaded_all)))
        busy = control.p99(page)
        summaries.append(
            (
                page,
                f"a core busy outside the server instead (control): p50 / p99 "
                f"{control.p50(page):.1f} / {busy:.1f} ms, p99 {busy / _p(idle_all, 99):.2f}x idle",
            )
        )
        if contrast is not None:
            on_loop = contrast.p99(page)
            summaries.append(
                (
                    page,
                    f"WeasyPrint ON the loop instead: p99 {on_loop:.0f} ms, "
                    f"{on_loop / _p(idle_all, 99):.0f}x idle",
                )
            )
    print()
    for number, (_, loaded, _) in enumerate(results, start=1):
        made = [m.server_seconds for m in loaded.made]
        print(
            f"round {number}: {len(made)} reports issued in the loaded window "
            f"({loaded.seconds:.1f} s), {loaded.overlapping} being made in it"
            + (
                f"; produce() took {statistics.median(made):.2f} s median, queue included"
                if made
                else ""
            )
            + ("; WARNING: the seeded versions ran out" if loaded.ran_out else "")
        )
    print("all rounds (idle: the windows before and after each loaded one):")
    for page, line in summaries:
        print(f"GET {page}: {line}")
    errors = [line for line in log.splitlines() if "Traceback" in line or "ERROR" in line]
    if errors:
        print(f"server log: {len(errors)} error lines, e.g. {errors[0][:200]}")
    if args.server_log:
        print(log[-20000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each in-process step")
    parser.add_argument("--requests", type=int, default=200, help="requests of each page a window")
    parser.add_argument(
        "--reports", type=int, default=8, help="reports to finish inside each loaded window"
    )
    parser.add_argument("--rounds", type=int, default=3, help="idle / loaded / idle rounds")
    parser.add_argument("--workers", type=int, default=None, help="report_workers of the server")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small numbers")
    parser.add_argument("--no-inline", action="store_true", help="skip the event-loop contrast")
    parser.add_argument("--server-only", action="store_true", help="skip part 1")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() in the server once it is warm"
    )
    parser.add_argument("--server-log", action="store_true", help="print the server's log")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.requests, args.reports, args.rounds = 3, 40, 4, 1
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.server_only:
        in_process(args.runs)
        loop_steps(1 if args.quick else 3)
        print()
    served(args)


if __name__ == "__main__":
    main()

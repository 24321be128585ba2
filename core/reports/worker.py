"""Report PDFs are made in worker processes, never in the web process.

WeasyPrint (a second or so for a long report) and pyHanko's signing are CPU-bound and hold the
GIL: in a thread they would still stall every other request of the process. A small process
pool (`report_workers`, default 1: on two cores the web process keeps the other) renders and
signs; the web process only awaits the bytes. The workers are started with `spawn` (a fork of
a process with running threads can inherit a held lock) and import WeasyPrint and pyHanko when
they start, so the first report does not pay for it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from core.pdf import html_to_pdf
from core.reports.render import ReportView, document_html
from core.reports.signing import SigningMaterial, sign_pdf
from core.specialty import Term

_pool: ProcessPoolExecutor | None = None
_size = 0
_lock = threading.Lock()


def _warm_up() -> None:
    import pyhanko.sign  # noqa: F401
    import weasyprint  # noqa: F401


@dataclass(frozen=True)
class Job:
    """What the worker needs to make one report's PDF: plain, picklable data. The HTML is made
    here too (the glossary scan and Jinja cost the web process's event loop ~4 ms a report)."""

    view: ReportView
    folders: tuple[str, ...]
    specialty_template: str | None
    glossary: tuple[Term, ...]
    verify_url: str
    reason: str
    location: str


def make_signed_pdf(job: Job, material: SigningMaterial) -> bytes:
    """In a worker process: the report's HTML, as a PDF, signed (PAdES)."""
    html = document_html(
        job.view,
        job.folders,
        job.specialty_template,
        verify_url=job.verify_url,
        glossary=job.glossary,
    )
    return sign_pdf(html_to_pdf(html), material, reason=job.reason, location=job.location)


def _executor(workers: int) -> ProcessPoolExecutor:
    global _pool, _size
    with _lock:
        if _pool is None or _size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=False)
            _pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_up,
            )
            _size = workers
        return _pool


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is broken:
            _pool = None


async def signed_pdf(job: Job, material: SigningMaterial, *, workers: int = 1) -> bytes:
    """Render and sign in the pool; a pool whose worker died (killed, out of memory) is replaced
    and the report tried once more."""
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        pool = _executor(workers)
        try:
            return await loop.run_in_executor(pool, make_signed_pdf, job, material)
        except BrokenProcessPool:
            _discard(pool)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def shutdown() -> None:
    """Stop the workers (the CLI and tests; the interpreter also does it at exit)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None

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

from core.pdf import html_to_pdf
from core.reports.signing import SigningMaterial, sign_pdf

_pool: ProcessPoolExecutor | None = None
_size = 0
_lock = threading.Lock()


def _warm_up() -> None:
    import pyhanko.sign  # noqa: F401
    import weasyprint  # noqa: F401


def make_signed_pdf(html: str, material: SigningMaterial, reason: str, location: str) -> bytes:
    """In a worker process: the HTML as a PDF, signed (PAdES)."""
    return sign_pdf(html_to_pdf(html), material, reason=reason, location=location)


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


async def signed_pdf(
    html: str, material: SigningMaterial, *, reason: str, location: str, workers: int = 1
) -> bytes:
    """Render and sign in the pool; a pool whose worker died (killed, out of memory) is replaced
    and the report tried once more."""
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        pool = _executor(workers)
        try:
            return await loop.run_in_executor(
                pool, make_signed_pdf, html, material, reason, location
            )
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

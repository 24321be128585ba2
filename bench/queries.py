"""Per-query cost on SQLite: Piccolo's stock engine against core's kept connections. Not a test:
it prints figures.

    .venv/bin/python bench/queries.py                 # 2,000 of each query per engine
    .venv/bin/python bench/queries.py --runs 500      # a quick run

A fresh database is migrated in a temporary directory (WAL, as `core.db` leaves it) and one
user is created. The engines run in the same process and event loop, on the same file, taking
turns in blocks of 100 so that any drift of the machine hits them all alike (a kept engine's
connections are closed while the others run, as they did not exist before, and reopened untimed
before its block):

- **before**: `piccolo.engine.sqlite.SQLiteEngine(path, timeout=30)`, what `core.db` built
  until issue 12: a new aiosqlite connection (and thread) per query and per transaction;
- **after**: `core.sqlite.KeptSQLiteEngine`, as `core.db.build_engine` builds it now;
- **kept+FULL**: the same with SQLite's default `synchronous=FULL` (an fsync per commit, as
  before), which separates what keeping connections saves from what `synchronous=NORMAL` does.

Queries, through Piccolo's query builder on the app's `User` table:

- **pk read**: `User.select().where(User.id == id).first()` (the signed-in user lookup);
- **update**: `User.update({session_epoch: session_epoch + 1}).where(User.id == id)`;
- **read+update in db.transaction()**: the usual write path (BEGIN IMMEDIATE, a read, an
  update, COMMIT);
- **100 concurrent pk reads**: wall time of `gather` of 100 reads (shows parallel readers).

Figures: the median and 90th percentile of the per-query wall time (perf_counter), the ratio
of the medians, and the threads started per 100 queries (`threading.Thread.start` counted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from piccolo.engine.sqlite import SQLiteEngine  # noqa: E402

from core import db  # noqa: E402
from core.accounts.tables import User  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.sqlite import KeptSQLiteEngine  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
BLOCK = 100

_started = 0
_start = threading.Thread.start


def _counting_start(self: threading.Thread) -> None:
    global _started
    _started += 1
    _start(self)


threading.Thread.start = _counting_start  # type: ignore[method-assign]


class KeptFullSyncEngine(KeptSQLiteEngine):
    """Kept connections with SQLite's default `synchronous=FULL` (an fsync per commit), to tell
    what keeping connections saves from what `synchronous=NORMAL` saves."""

    async def prepare_connection(self, connection, *, reader: bool) -> None:
        await super().prepare_connection(connection, reader=reader)
        await connection.execute("PRAGMA synchronous = FULL")


async def _timed(work: Callable[[], Awaitable[object]], n: int) -> tuple[list[float], int]:
    """Per-call seconds of `n` sequential calls, and the threads they started."""
    times = []
    threads_before = _started
    for _ in range(n):
        start = time.perf_counter()
        await work()
        times.append(time.perf_counter() - start)
    return times, _started - threads_before


def _bind(engine: object) -> None:
    import piccolo_conf

    piccolo_conf.DB = engine
    User._meta.db = engine


async def main(runs: int) -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="consilium-bench-queries-"))
    try:
        settings = Settings(_env_file=None, var_dir=var_dir, secret_key=SECRET)  # type: ignore[call-arg]
        db.configure_database(settings)
        with contextlib.redirect_stdout(io.StringIO()):
            await db.run_migrations()
        await db.close_pool()
        user = User(email="bench@example.com", role="patient", full_name="Bench")
        await user.save()
        await db.close_pool()
        uid = user.id
        path = str(settings.sqlite_path)
        engines = {
            "before": SQLiteEngine(path=path, timeout=db.SQLITE_BUSY_TIMEOUT_SECONDS),
            "after": KeptSQLiteEngine(path=path, busy_timeout=db.SQLITE_BUSY_TIMEOUT_SECONDS),
            "kept+FULL": KeptFullSyncEngine(path=path, busy_timeout=db.SQLITE_BUSY_TIMEOUT_SECONDS),
        }

        async def pk_read() -> object:
            return await User.select().where(User.id == uid).first()

        async def update() -> object:
            return await User.update({User.session_epoch: User.session_epoch + 1}).where(
                User.id == uid
            )

        async def read_update() -> None:
            async with db.transaction():
                row = await User.select(User.session_epoch).where(User.id == uid).first()
                await User.update({User.session_epoch: row["session_epoch"] + 1}).where(
                    User.id == uid
                )

        async def concurrent_reads() -> None:
            await asyncio.gather(*(pk_read() for _ in range(100)))

        cases: list[tuple[str, Callable[[], Awaitable[object]], int]] = [
            ("pk read", pk_read, runs),
            ("update", update, runs),
            ("read+update in db.transaction()", read_update, runs),
            ("100 concurrent pk reads (per batch)", concurrent_reads, max(runs // 100, 5)),
        ]
        for name in engines:  # warm up: imports, statement caches
            _bind(engines[name])
            for _, work, _ in cases:
                await _timed(work, 5)
        for engine in engines.values():
            if isinstance(engine, KeptSQLiteEngine):
                await engine.close_connection_pool()

        print(f"SQLite {db.sqlite3.sqlite_version}, {runs} runs of each query per engine\n")
        header = f"{'query':38} {'engine':9} {'median':>9} {'p90':>9} {'threads/100 q':>14}"
        print(header)
        print("-" * len(header))
        for label, work, n in cases:
            times: dict[str, list[float]] = {name: [] for name in engines}
            threads: dict[str, int] = dict.fromkeys(engines, 0)
            block = min(BLOCK, n)
            for _ in range(max(n // block, 1)):
                for name, engine in engines.items():
                    _bind(engine)
                    if isinstance(engine, KeptSQLiteEngine):
                        await _timed(work, 1)  # reopen its connections, untimed
                    spent, started = await _timed(work, block)
                    times[name] += spent
                    threads[name] += started
                    if isinstance(engine, KeptSQLiteEngine):
                        # Closed while the stock engine runs: as in the app before, its
                        # per-query connections are then the only ones (the last one to close
                        # checkpoints and deletes the WAL).
                        await engine.close_connection_pool()
            queries_per_call = 100 if label.startswith("100") else 1
            for name in engines:
                median = statistics.median(times[name])
                p90 = statistics.quantiles(times[name], n=10)[-1]
                per_100 = threads[name] * 100 / (len(times[name]) * queries_per_call)
                print(
                    f"{label:38} {name:9} {median * 1e3:8.3f}ms {p90 * 1e3:8.3f}ms {per_100:14.1f}"
                )
            for name in engines:
                if name != "before":
                    ratio = statistics.median(times["before"]) / statistics.median(times[name])
                    print(f"{'':38} {'before/' + name:17} {ratio:6.1f}x")
            print()
        for engine in engines.values():
            if isinstance(engine, KeptSQLiteEngine):
                _bind(engine)
                await engine.close_connection_pool()
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="queries of each kind per engine")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs))

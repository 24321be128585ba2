"""The database layer (core/db.py, core/sqlite.py): what `db.transaction()` promises on both
engines, and SQLite's kept connections (one serialised writer, parallel readers, per event
loop, closed by `close_pool` or when their loop ends)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from piccolo.columns import Integer
from piccolo.querystring import QueryString
from piccolo.table import Table

from core import db
from core.accounts.tables import User
from core.sqlite import KeptSQLiteEngine, is_read

only_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
WAIT = 10  # seconds: a step that should take milliseconds failing here means a deadlock


class DbProbe(Table, tablename="db_probe"):
    """A table of this test's own (not in any app, so no migration knows it)."""

    n = Integer(default=0)


@pytest.fixture
async def probe(settings) -> type[DbProbe]:
    DbProbe._meta.db = db.current_engine()
    await DbProbe.create_table()
    return DbProbe


async def _count() -> int:
    return await asyncio.wait_for(DbProbe.count(), WAIT)


# What db.transaction() promises, on both engines ---------------------------------------------


async def test_a_transaction_sees_its_own_writes_and_others_only_after_commit(probe) -> None:
    written, release = asyncio.Event(), asyncio.Event()

    async def write() -> int:
        async with db.transaction():
            await DbProbe.insert(DbProbe(n=1))
            seen_inside = await DbProbe.count()  # a read in the transaction: its own write
            written.set()
            await release.wait()
        return seen_inside

    task = asyncio.create_task(write())
    await asyncio.wait_for(written.wait(), WAIT)
    # Outside (another task), while the write transaction is open: not seen, and not blocked.
    assert await _count() == 0
    release.set()
    assert await asyncio.wait_for(task, WAIT) == 1
    assert await _count() == 1  # the next read after the commit sees it

    async with db.transaction():
        await DbProbe.insert(DbProbe(n=2))
    assert await _count() == 2  # the same task, right after its commit


async def test_a_rolled_back_transaction_leaves_nothing(probe) -> None:
    effects: list[str] = []
    with pytest.raises(RuntimeError, match="undo"):
        async with db.transaction():
            await DbProbe.insert(DbProbe(n=1))
            await DbProbe.raw("UPDATE db_probe SET n = n + 10")
            db.on_commit(lambda: effects.append("ran"))
            raise RuntimeError("undo")
    assert await _count() == 0
    assert effects == []
    # The connection is usable afterwards, in and out of a transaction.
    async with db.transaction():
        await DbProbe.insert(DbProbe(n=3))
    assert await DbProbe.select(DbProbe.n).output(as_list=True) == [3]


async def test_a_nested_transaction_joins_the_open_one(probe) -> None:
    effects: list[str] = []
    engine = db.current_engine()
    with pytest.raises(RuntimeError):
        async with db.transaction():
            outer = engine.current_transaction.get()
            await DbProbe.insert(DbProbe(n=1))
            async with db.transaction():
                assert engine.current_transaction.get() is outer
                await DbProbe.insert(DbProbe(n=2))
                assert await DbProbe.count() == 2
            raise RuntimeError("the outer one fails: the inner writes go too")
    assert await _count() == 0

    async def nested() -> None:
        async with db.transaction():
            async with db.transaction():
                await DbProbe.insert(DbProbe(n=1))
                db.on_commit(lambda: effects.append("inner"))
            assert effects == []  # the inner block's end is not a commit
        assert effects == ["inner"]

    await asyncio.wait_for(nested(), WAIT)
    assert await _count() == 1


# SQLite: one serialised writer ---------------------------------------------------------------


@only_sqlite  # Piccolo's PostgresTransaction leaves itself current after a failed COMMIT
async def test_a_transaction_that_fails_at_commit_leaves_nothing_open(probe) -> None:
    # A deferred foreign key is checked at COMMIT: on SQLite the commit fails with the
    # transaction still open on the writer. Left so, the next transaction could not begin, and
    # a write outside one would land in it.
    await DbProbe.raw(
        "CREATE TABLE db_probe_child (id INTEGER PRIMARY KEY, "
        "parent INTEGER REFERENCES db_probe (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    for _ in range(2):
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            async with db.transaction():
                await DbProbe.insert(DbProbe(n=1))
                await DbProbe.raw("INSERT INTO db_probe_child (id, parent) VALUES (1, 999)")
        assert await _count() == 0
    await asyncio.wait_for(DbProbe.insert(DbProbe(n=2)), WAIT)
    async with db.transaction():
        await DbProbe.insert(DbProbe(n=3))
    assert sorted(await DbProbe.select(DbProbe.n).output(as_list=True)) == [2, 3]


@only_sqlite
async def test_concurrent_read_then_write_transactions_never_fail(probe) -> None:
    await DbProbe.insert(DbProbe(n=0))

    async def increment() -> None:
        async with db.transaction():
            row = await DbProbe.select().first()
            await asyncio.sleep(0)  # let the others run between the read and the write
            await DbProbe.update({DbProbe.n: row["n"] + 1}).where(DbProbe.id == row["id"])

    results = await asyncio.wait_for(
        asyncio.gather(*(increment() for _ in range(200)), return_exceptions=True), 60
    )
    assert [r for r in results if r is not None] == []
    assert await DbProbe.select(DbProbe.n).output(as_list=True) == [200]


@only_sqlite
async def test_a_write_outside_a_transaction_waits_for_the_open_one(probe) -> None:
    # On one shared connection, a write that did not wait would land in the open transaction
    # and roll back with it.
    opened = asyncio.Event()

    async def failing() -> None:
        async with db.transaction():
            await DbProbe.insert(DbProbe(n=1))
            opened.set()
            await asyncio.sleep(0.1)  # the write below is queued meanwhile
            raise RuntimeError("rolled back")

    task = asyncio.create_task(failing())
    await opened.wait()
    await asyncio.wait_for(DbProbe.insert(DbProbe(n=2)), WAIT)
    with pytest.raises(RuntimeError):
        await task
    assert await DbProbe.select(DbProbe.n).output(as_list=True) == [2]


@only_sqlite
async def test_a_task_left_holding_an_ended_transaction_fails_loudly(probe) -> None:
    release = asyncio.Event()

    async def straggler() -> None:
        await release.wait()
        await DbProbe.insert(DbProbe(n=1))  # its context still names the ended transaction

    async with db.transaction():
        task = asyncio.create_task(straggler())
    release.set()
    with pytest.raises(Exception, match="transaction this task inherited has ended"):
        await asyncio.wait_for(task, WAIT)
    assert await _count() == 0


# SQLite: parallel readers ---------------------------------------------------------------------


class MeetingEngine(KeptSQLiteEngine):
    """Readers get `meet()`: it returns only once two connections' threads are inside it at
    the same time (or fails after the barrier's timeout)."""

    def __init__(self, path: str, barrier: threading.Barrier, **kwargs) -> None:
        super().__init__(path, **kwargs)
        self.barrier = barrier

    async def prepare_connection(self, connection, *, reader: bool) -> None:
        await super().prepare_connection(connection, reader=reader)
        await connection.create_function("meet", 0, lambda: self.barrier.wait() + 1)


@only_sqlite
async def test_reads_outside_transactions_run_in_parallel(settings) -> None:
    engine = MeetingEngine(str(settings.sqlite_path), threading.Barrier(2, timeout=5))
    try:
        read = QueryString("SELECT meet() AS met")
        first, second = await asyncio.gather(
            engine.run_querystring(read), engine.run_querystring(read)
        )
        assert sorted([first[0]["met"], second[0]["met"]]) == [1, 2]
    finally:
        await engine.close_connection_pool()


def test_reads_are_told_from_writes() -> None:
    assert is_read("SELECT 1")
    assert is_read('\n  select "x" FROM y')
    assert is_read("-- a note\n/* another */ SELECT 1")
    for sql in (
        "INSERT INTO t (a) VALUES (1) RETURNING id",
        "UPDATE t SET a = (SELECT 1)",
        "WITH x AS (SELECT 1) DELETE FROM t",
        "PRAGMA journal_mode = WAL",
        "CREATE TABLE t (a INTEGER)",
        "BEGIN IMMEDIATE",
        "",
        "  ;",
    ):
        assert not is_read(sql), sql


# SQLite: connections per event loop, and closing them ----------------------------------------


@only_sqlite
async def test_close_pool_leaves_no_connection_or_thread(settings) -> None:
    engine = db.current_engine()
    assert isinstance(engine, KeptSQLiteEngine)
    before = threading.active_count()
    await db.start_pool(settings)  # the writer
    await asyncio.gather(*(User.count() for _ in range(3)))  # three readers at once
    assert engine.open_connections() == 4
    assert threading.active_count() == before + 4
    await db.close_pool()
    assert engine.open_connections() == 0
    assert threading.active_count() == before
    assert await User.count() == 0  # used again: opened again, and closed when the loop ends


@only_sqlite
def test_an_engine_used_from_another_event_loop_reopens(settings) -> None:
    engine = db.current_engine()
    assert isinstance(engine, KeptSQLiteEngine)
    before = threading.active_count()

    async def use() -> int:
        async with db.transaction():
            await User.raw("UPDATE account_user SET session_epoch = session_epoch + 1")
        return await User.count()

    # A loop that ends the usual way (asyncio.run): its connections close with it.
    assert asyncio.run(use()) == 0
    assert (engine.open_connections(), threading.active_count()) == (0, before)

    # A loop closed without shutting anything down: its connections outlive it...
    loop = asyncio.new_event_loop()
    assert loop.run_until_complete(use()) == 0
    loop.close()
    assert engine.open_connections() == 2
    # ...until the engine is used from another loop, which reopens and closes the dead ones
    # without calling into the closed loop (that would fail in their threads).
    assert asyncio.run(use()) == 0
    assert (engine.open_connections(), threading.active_count()) == (0, before)

    # Piccolo's run_sync (a loop of its own each time).
    assert User.count().run_sync() == 0
    assert (engine.open_connections(), threading.active_count()) == (0, before)

    # Replacing the engine disposes of the connections of loops that are not running: a closed
    # one, and one that runs again later (and then has nothing of ours left to finalise).
    # The closed one stays this thread's current loop: whatever answers through "the current
    # loop" would now fail with "Event loop is closed" in the connections' threads.
    closed, idle = asyncio.new_event_loop(), asyncio.new_event_loop()
    idle.run_until_complete(use())
    asyncio.set_event_loop(closed)
    try:
        closed.run_until_complete(use())
        closed.close()
        assert engine.open_connections() == 4
        db.configure_database(settings)
    finally:
        asyncio.set_event_loop(None)
    assert (engine.open_connections(), threading.active_count()) == (0, before)
    assert idle.run_until_complete(use()) == 0  # the new engine, in the same loop
    idle.run_until_complete(idle.shutdown_asyncgens())
    idle.close()
    assert (db.current_engine().open_connections(), threading.active_count()) == (0, before)

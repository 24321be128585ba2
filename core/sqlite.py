"""SQLite with kept connections: one writer and a few readers per event loop.

Piccolo's `SQLiteEngine` opens a new aiosqlite connection (a new thread, the WAL and -shm files
opened and deleted again) for every query and every transaction. `KeptSQLiteEngine` keeps them:

- **one writer connection**, serialised by an asyncio lock held for a whole write transaction
  (and for a single write outside one). Every transaction runs on it, so the reads inside a
  transaction see its uncommitted writes; a second writer of this process waits for the lock
  (up to the busy timeout, then "database is locked", as SQLite itself would) instead of
  failing at once.
- **a few reader connections** (`PRAGMA query_only`) shared by the SELECTs that run outside a
  transaction, in parallel. In WAL mode each statement of a reader starts a new read
  transaction, so a read after a committed write sees it, and nobody sees another's
  uncommitted writes.
- every connection in WAL mode, with `busy_timeout` (other processes: CLI commands) and
  `synchronous=NORMAL` (a commit is a WAL append; durable at the next checkpoint, and never
  corrupt).

aiosqlite runs each connection on its own thread and answers through the event loop that asked,
and the locks here belong to one loop; tests make a loop per test, CLI commands one per run.
So the connections are kept **per event loop**, opened lazily in it, and closed:

- by `close_connection_pool()` (`core.db.close_pool`, in the app's lifespan and commands);
- when the loop shuts down (`asyncio.run` and pytest-asyncio's runner call
  `loop.shutdown_asyncgens()`, which finalises the watcher generator each loop gets);
- otherwise, once their loop is closed, by the next use of the engine from any loop or by
  `dispose()` (`core.db.configure_database` disposes of the engine it replaces), without
  touching the dead loop: the close is queued to the connection's thread with no future.

Connection threads are daemon threads, so a connection nobody closed never holds up the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
from aiosqlite.core import _STOP_RUNNING_SENTINEL
from piccolo.engine.sqlite import (
    SQLiteEngine,
    SQLiteTransaction,
    TransactionType,
    dict_factory,
)

# Reads outside a transaction run on up to this many connections at once.
READERS = 3
# How long closing waits for a connection's thread to finish (it finishes the query in hand).
_JOIN_SECONDS = 5.0

# The first keyword of a statement, after any whitespace and comments.
_FIRST_WORD = re.compile(r"(?:\s|--[^\n]*\n?|/\*.*?\*/)*(\w+)", re.DOTALL)


def is_read(sql: str) -> bool:
    """True for a statement a reader may run: a SELECT. Anything else (WITH, PRAGMA, DDL,
    INSERT … RETURNING) goes to the writer: safe, only serialised."""
    match = _FIRST_WORD.match(sql)
    return match is not None and match.group(1).upper() == "SELECT"


def _stop_without_loop(connection: aiosqlite.Connection) -> threading.Thread:
    """Queue the close of an aiosqlite connection with no future, so that its thread never
    calls into an event loop (that loop may be closed: aiosqlite's own `stop()` would answer
    through it and die with "Event loop is closed"). Returns the thread, to join."""
    connection._running = False
    raw = connection._connection

    def close_and_stop() -> object:
        if raw is not None:
            raw.close()
        connection._connection = None
        return _STOP_RUNNING_SENTINEL

    connection._tx.put_nowait((None, close_and_stop))
    return connection._thread


class _Connections:
    """The kept connections of one event loop."""

    def __init__(self, engine: KeptSQLiteEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.closed = False
        self.writer: aiosqlite.Connection | None = None
        self.writer_lock = asyncio.Lock()
        # Opened readers on top (LIFO: the warm ones are reused); None is a slot not yet opened.
        self.idle_readers: asyncio.LifoQueue[aiosqlite.Connection | None] = asyncio.LifoQueue()
        for _ in range(engine.readers):
            self.idle_readers.put_nowait(None)
        self.opened: set[aiosqlite.Connection] = set()
        self.retired: list[threading.Thread] = []  # dropped connections whose thread may run
        self.watcher: Any = None

    # The writer ---------------------------------------------------------------------------

    async def take_writer(self) -> aiosqlite.Connection:
        """The writer connection, with its lock held: pair with `give_back_writer`."""
        try:
            async with asyncio.timeout(self.engine.busy_timeout):
                await self.writer_lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError(
                f"database is locked (no writer for {self.engine.busy_timeout:g} s)"
            ) from None
        try:
            if self.closed:
                raise sqlite3.ProgrammingError("the engine's connections are closed")
            if self.writer is None:
                self.writer = await self.engine.open_connection(reader=False)
                self.opened.add(self.writer)
            return self.writer
        except BaseException:
            self.writer_lock.release()
            raise

    async def give_back_writer(self, *, clean: bool) -> None:
        """Release the writer. Not `clean` (a BEGIN, COMMIT or ROLLBACK failed or was
        cancelled): roll back whatever is left open, or drop the connection."""
        try:
            writer = self.writer
            if not clean and writer is not None:
                try:
                    # Queued after anything still running on the writer's thread.
                    await writer.execute_fetchall("ROLLBACK")
                except sqlite3.OperationalError as exc:
                    if "no transaction is active" not in str(exc):
                        self._drop_writer()
                except Exception:  # the caller's error is the one to see
                    self._drop_writer()
                except BaseException:  # cancelled meanwhile
                    self._drop_writer()
                    raise
        finally:
            self.writer_lock.release()

    def _drop_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            self.opened.discard(writer)
            self.retired.append(_stop_without_loop(writer))

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer for one statement outside a transaction (SQLite autocommits it)."""
        writer = await self.take_writer()
        try:
            yield writer
        finally:
            self.writer_lock.release()

    # Readers ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        reader = await self.idle_readers.get()
        try:
            if self.closed:
                raise sqlite3.ProgrammingError("the engine's connections are closed")
            if reader is None:
                reader = await self.engine.open_connection(reader=True)
                self.opened.add(reader)
            yield reader
        finally:
            if reader is not None and reader not in self.opened:
                reader = None  # closed meanwhile: the slot opens a new one
            self.idle_readers.put_nowait(reader)

    # Closing ------------------------------------------------------------------------------

    async def watch_loop_end(self) -> None:
        """Close these connections when the loop shuts down its async generators (the last
        thing `asyncio.run` and pytest-asyncio do before closing a loop)."""
        if getattr(self.loop, "_asyncgens_shutdown_called", False):
            return  # too late to register: closed by the next use or dispose()

        async def watcher() -> AsyncIterator[None]:
            try:
                yield
            finally:
                self.watcher = None
                await self.aclose()

        self.watcher = watcher()
        # The first step registers the generator with the running loop; it stops at `yield`.
        await anext(self.watcher)

    async def aclose(self) -> None:
        """Close every connection, in the loop that opened them."""
        if self.closed:
            return
        self.closed = True
        self.engine.forget(self)
        connections, self.opened, self.writer = list(self.opened), set(), None
        threads = [connection._thread for connection in connections]
        try:
            for connection in connections:
                with contextlib.suppress(Exception):
                    await connection.close()
        finally:
            self._join(threads + self.retired)
            watcher, self.watcher = self.watcher, None
            if watcher is not None:
                await watcher.aclose()

    def stop_now(self) -> None:
        """Close every connection without their loop (closed, or not running)."""
        self.closed = True
        self.engine.forget(self)
        connections, self.opened, self.writer = list(self.opened), set(), None
        self._join([_stop_without_loop(connection) for connection in connections] + self.retired)

    def _join(self, threads: list[threading.Thread]) -> None:
        for thread in threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(_JOIN_SECONDS)
        self.retired = [thread for thread in self.retired if thread.is_alive()]

    def live_threads(self) -> int:
        threads = [connection._thread for connection in self.opened] + self.retired
        return sum(thread.is_alive() for thread in threads)


class KeptSQLiteTransaction(SQLiteTransaction):
    """A transaction on the engine's writer connection, holding the writer lock throughout.
    A nested one joins the open one (Piccolo's `_parent`), taking nothing."""

    __slots__ = ("_connections",)

    engine: KeptSQLiteEngine

    async def get_connection(self) -> aiosqlite.Connection:
        self._connections = await self.engine.connections()
        return await self._connections.take_writer()

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            await self.begin()
        except BaseException:
            await self._connections.give_back_writer(clean=False)
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type, exception, traceback) -> bool:
        if self._parent:
            return exception is None
        clean = False
        try:
            if exception:
                if not self._rolled_back:  # the caller may have rolled back already
                    await self.rollback()
            elif not self._committed and not self._rolled_back:
                await self.commit()
            clean = True
        finally:
            self.engine.current_transaction.reset(self.context)
            # A task started inside the transaction that outlives it must not write on the
            # writer without the lock (it would join somebody else's transaction).
            self.connection = None
            await self._connections.give_back_writer(clean=clean)
        return exception is None


class KeptSQLiteEngine(SQLiteEngine):
    """Piccolo's SQLite engine with kept connections (see the module's docstring)."""

    __slots__ = ("_by_loop", "_guard", "busy_timeout", "readers")

    def __init__(
        self,
        path: str = "piccolo.sqlite",
        *,
        readers: int = READERS,
        busy_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(path=path, timeout=busy_timeout, **kwargs)
        self.readers = readers
        self.busy_timeout = busy_timeout
        self._by_loop: dict[asyncio.AbstractEventLoop, _Connections] = {}
        self._guard = threading.RLock()  # run_sync may use the engine from another thread

    # Connections --------------------------------------------------------------------------

    async def open_connection(self, *, reader: bool) -> aiosqlite.Connection:
        """A new configured connection; the caller closes it."""
        connection = aiosqlite.connect(**self.connection_kwargs)
        connection._thread.daemon = True  # never holds up the interpreter's exit
        await connection
        try:
            connection.row_factory = dict_factory
            await self.prepare_connection(connection, reader=reader)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def prepare_connection(self, connection: aiosqlite.Connection, *, reader: bool) -> None:
        """Per-connection settings (WAL is the file's: a no-op once set)."""
        pragmas = [
            "PRAGMA journal_mode = WAL",
            f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA foreign_keys = 1",
        ]
        if reader:
            pragmas.append("PRAGMA query_only = 1")
        await connection.executescript(";\n".join(pragmas) + ";")

    async def get_connection(self) -> aiosqlite.Connection:
        """A connection of its own (Piccolo's `batch()` takes one and closes it)."""
        return await self.open_connection(reader=False)

    async def connections(self) -> _Connections:
        """The running loop's connections, set up on its first use."""
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is not None and not found.closed:
            return found
        with self._guard:
            for other in list(self._by_loop.values()):
                if other.loop.is_closed():  # its loop is gone: so must its threads be
                    other.stop_now()
            found = _Connections(self, loop)
            self._by_loop[loop] = found
        await found.watch_loop_end()
        return found

    def forget(self, connections: _Connections) -> None:
        with self._guard:
            if self._by_loop.get(connections.loop) is connections:
                del self._by_loop[connections.loop]

    async def start_connection_pool(self, **_: Any) -> None:
        """Open the writer now, so that a database that cannot be opened stops the start."""
        connections = await self.connections()
        await connections.take_writer()
        await connections.give_back_writer(clean=True)

    async def close_connection_pool(self) -> None:
        """Close this loop's connections, and those of loops that are no longer running."""
        loop = asyncio.get_running_loop()
        for connections in list(self._by_loop.values()):
            if connections.loop is loop:
                await connections.aclose()
            elif not connections.loop.is_running():
                connections.stop_now()

    def dispose(self) -> None:
        """Close, without an event loop, the connections of loops that are closed or not
        running; those of running loops close when their loop shuts down."""
        for connections in list(self._by_loop.values()):
            if connections.loop.is_closed() or not connections.loop.is_running():
                connections.stop_now()

    def open_connections(self) -> int:
        """How many connection threads are alive (for tests and benchmarks)."""
        return sum(connections.live_threads() for connections in list(self._by_loop.values()))

    # Queries ------------------------------------------------------------------------------

    async def _run_in_new_connection(
        self,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        """Outside a transaction: a SELECT on a reader, anything else on the writer."""
        connections = await self.connections()
        holding = connections.reading() if is_read(query) else connections.writing()
        async with holding as connection:
            return await self._run_in_existing_connection(
                connection, query, args=args, query_type=query_type, table=table
            )

    async def _run_in_existing_connection(
        self,
        connection: Any,
        query: str,
        args: list[Any] | None = None,
        query_type: str = "generic",
        table: Any = None,
    ) -> Any:
        """One trip to the connection's thread (Piccolo's takes three, and sets a PRAGMA each
        time that our connections have from the start)."""
        if connection is None:
            raise sqlite3.ProgrammingError("the transaction this task inherited has ended")
        if query_type == "insert" and self.get_version_sync() < 3.35:  # no RETURNING
            return await super()._run_in_existing_connection(
                connection, query, args=args, query_type=query_type, table=table
            )
        return await connection.execute_fetchall(query, args or [])

    def transaction(
        self,
        transaction_type: TransactionType = TransactionType.deferred,
        allow_nested: bool = True,
    ) -> KeptSQLiteTransaction:
        return KeptSQLiteTransaction(
            engine=self, transaction_type=transaction_type, allow_nested=allow_nested
        )

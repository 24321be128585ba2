"""Indexes for the audit log's pages when filtered by account (core/audit/service.py search).

A page is the newest events before a sequence number; filtered by who acted or whom it
concerns, an index on (that column, seq) reads just the page's rows in order. SQLite has one
already: its index on a column ends with the rowid, which is `seq`. PostgreSQL's does not.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-12-07T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit_event indexes by account and seq (PostgreSQL)"

INDEXES = {
    "audit_event_actor_uid_seq": "actor_uid, seq",
    "audit_event_subject_uid_seq": "subject_uid, seq",
}


async def _run(statements: list[str]) -> None:
    engine = engine_finder()
    assert engine is not None
    if not isinstance(engine, PostgresEngine):
        return
    for statement in statements:  # one a call: asyncpg refuses several at once
        await engine.run_ddl(statement)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def create() -> None:
        await _run(
            [
                f"CREATE INDEX IF NOT EXISTS {name} ON audit_event ({columns})"
                for name, columns in INDEXES.items()
            ]
        )

    async def drop() -> None:
        await _run([f"DROP INDEX IF EXISTS {name}" for name in INDEXES])

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager

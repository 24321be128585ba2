"""Make audit_event append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL).

Triggers bind the table's owner too, so the app's own database role cannot rewrite history
by mistake or through an injection; an attacker with owner rights could drop them, which is
what the hash chain is for. SQL is chosen by engine when the migration runs.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-11-22T02:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit_event is append-only"

MESSAGE = "audit log is append-only"

SQLITE_FORWARDS = [
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
SQLITE_BACKWARDS = [
    "DROP TRIGGER IF EXISTS audit_event_no_update",
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
]

POSTGRES_FORWARDS = [
    "CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    f"RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege'; "
    "END; $$",
    "CREATE TRIGGER audit_event_no_update_delete BEFORE UPDATE OR DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change()",
    # TRUNCATE fires no row triggers, so it needs a statement trigger of its own.
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change()",
]
POSTGRES_BACKWARDS = [
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event",
    "DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_event",
    "DROP FUNCTION IF EXISTS audit_event_refuse_change()",
]


async def _run(sqlite: list[str], postgres: list[str]) -> None:
    engine = engine_finder()
    assert engine is not None
    # One statement per call: asyncpg prepares statements and refuses several at once.
    for statement in sqlite if isinstance(engine, SQLiteEngine) else postgres:
        await engine.run_ddl(statement)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def create_triggers() -> None:
        await _run(SQLITE_FORWARDS, POSTGRES_FORWARDS)

    async def drop_triggers() -> None:
        await _run(SQLITE_BACKWARDS, POSTGRES_BACKWARDS)

    manager.add_raw(create_triggers)
    manager.add_raw_backwards(drop_triggers)
    return manager

"""The communication log is a record of who was told what and when, and it is printed in the
signed report: like a signed review, a logged conversation is never updated or deleted
(triggers on both engines, TRUNCATE included on PostgreSQL). A mistake is corrected by logging
another conversation."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-07T10:00:16:000000"
VERSION = "1.38.0"
DESCRIPTION = "logged conversations are immutable"

MESSAGE = "a logged conversation cannot be changed"

SQLITE_FORWARDS = [
    "CREATE TRIGGER review_communication_no_update BEFORE UPDATE ON review_communication "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    "CREATE TRIGGER review_communication_no_delete BEFORE DELETE ON review_communication "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
SQLITE_BACKWARDS = [
    "DROP TRIGGER IF EXISTS review_communication_no_update",
    "DROP TRIGGER IF EXISTS review_communication_no_delete",
]

POSTGRES_FORWARDS = [
    "CREATE OR REPLACE FUNCTION review_communication_refuse_change() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    f"RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege'; "
    "END; $$",
    "CREATE TRIGGER review_communication_no_update_delete BEFORE UPDATE OR DELETE "
    "ON review_communication FOR EACH ROW EXECUTE FUNCTION review_communication_refuse_change()",
    "CREATE TRIGGER review_communication_no_truncate BEFORE TRUNCATE ON review_communication "
    "FOR EACH STATEMENT EXECUTE FUNCTION review_communication_refuse_change()",
]
POSTGRES_BACKWARDS = [
    "DROP TRIGGER IF EXISTS review_communication_no_truncate ON review_communication",
    "DROP TRIGGER IF EXISTS review_communication_no_update_delete ON review_communication",
    "DROP FUNCTION IF EXISTS review_communication_refuse_change()",
]


async def _run(statements: list[str]) -> None:
    engine = engine_finder()
    assert engine is not None
    # One statement per call: asyncpg prepares statements and refuses several at once.
    for statement in statements:
        await engine.run_ddl(statement)


def _sqlite() -> bool:
    return isinstance(engine_finder(), SQLiteEngine)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="reviews", description=DESCRIPTION)

    async def create() -> None:
        await _run(SQLITE_FORWARDS if _sqlite() else POSTGRES_FORWARDS)

    async def drop() -> None:
        await _run(SQLITE_BACKWARDS if _sqlite() else POSTGRES_BACKWARDS)

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager

"""A signed review is immutable: triggers refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL), as for the audit log, so no code path — a bug, an injection, a script — can change
what a doctor signed. One draft per case and doctor, one signed review per case and sequence
(two tabs signing at once: the second insert fails)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-07T10:00:08:000000"
VERSION = "1.38.0"
DESCRIPTION = "signed reviews are immutable; one draft per case and doctor"

MESSAGE = "a signed review cannot be changed"

INDEXES = [
    "CREATE UNIQUE INDEX review_draft_case_doctor ON review_draft (\"case\", doctor)",
    "CREATE UNIQUE INDEX review_signed_case_sequence ON review_signed (\"case\", sequence)",
]
INDEXES_BACKWARDS = [
    "DROP INDEX IF EXISTS review_draft_case_doctor",
    "DROP INDEX IF EXISTS review_signed_case_sequence",
]

SQLITE_FORWARDS = [
    "CREATE TRIGGER review_signed_no_update BEFORE UPDATE ON review_signed "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    "CREATE TRIGGER review_signed_no_delete BEFORE DELETE ON review_signed "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
]
SQLITE_BACKWARDS = [
    "DROP TRIGGER IF EXISTS review_signed_no_update",
    "DROP TRIGGER IF EXISTS review_signed_no_delete",
]

POSTGRES_FORWARDS = [
    "CREATE OR REPLACE FUNCTION review_signed_refuse_change() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN "
    f"RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege'; "
    "END; $$",
    "CREATE TRIGGER review_signed_no_update_delete BEFORE UPDATE OR DELETE ON review_signed "
    "FOR EACH ROW EXECUTE FUNCTION review_signed_refuse_change()",
    # TRUNCATE fires no row triggers, so it needs a statement trigger of its own.
    "CREATE TRIGGER review_signed_no_truncate BEFORE TRUNCATE ON review_signed "
    "FOR EACH STATEMENT EXECUTE FUNCTION review_signed_refuse_change()",
]
POSTGRES_BACKWARDS = [
    "DROP TRIGGER IF EXISTS review_signed_no_truncate ON review_signed",
    "DROP TRIGGER IF EXISTS review_signed_no_update_delete ON review_signed",
    "DROP FUNCTION IF EXISTS review_signed_refuse_change()",
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
        await _run(INDEXES + (SQLITE_FORWARDS if _sqlite() else POSTGRES_FORWARDS))

    async def drop() -> None:
        await _run((SQLITE_BACKWARDS if _sqlite() else POSTGRES_BACKWARDS) + INDEXES_BACKWARDS)

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager

"""One open offer per case, enforced by the database: a unique index on the case over the rows
whose status is "offered" or "accepted" (a partial index: SQLite and PostgreSQL both have them,
with the same syntax). Two coordinators, or a coordinator and the expiry job, moving a case at
once cannot leave it with two doctors."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T23:48:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one open offer per case"

INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS assignment_offer_one_open "
    "ON assignment_offer (\"case\") WHERE status IN ('offered', 'accepted')"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="assignment", description=DESCRIPTION)

    async def create() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(INDEX)

    async def drop() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl("DROP INDEX IF EXISTS assignment_offer_one_open")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager

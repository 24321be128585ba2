"""Out-of-office ranges' public ids are unique (an index: SQLite cannot add a UNIQUE column)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T00:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique out-of-office ids"

INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS account_doctor_away_uid_unique "
    "ON account_doctor_away (uid)"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="accounts", description=DESCRIPTION)

    async def create() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl(INDEX)

    async def drop() -> None:
        engine = engine_finder()
        assert engine is not None
        await engine.run_ddl("DROP INDEX IF EXISTS account_doctor_away_uid_unique")

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager

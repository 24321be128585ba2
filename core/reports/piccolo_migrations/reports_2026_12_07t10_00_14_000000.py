"""One row per report and version: two corrections signed at once cannot both become the
current version (the second insert fails)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T10:00:14:000000"
VERSION = "1.38.0"
DESCRIPTION = "one row per report and version"

FORWARDS = [
    "CREATE UNIQUE INDEX report_version_report_version ON report_version (report, version)",
]
BACKWARDS = ["DROP INDEX IF EXISTS report_version_report_version"]


async def _run(statements: list[str]) -> None:
    engine = engine_finder()
    assert engine is not None
    for statement in statements:
        await engine.run_ddl(statement)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="reports", description=DESCRIPTION)

    async def run() -> None:
        await _run(FORWARDS)

    async def run_backwards() -> None:
        await _run(BACKWARDS)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager

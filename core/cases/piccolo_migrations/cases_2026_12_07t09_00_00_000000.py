"""Indexes for lists of cases, a page at a time (keyset pagination, core/cases/service.py).

Each list filters on one column and orders by a time, then the id; an index on the three
columns serves the first page and every later one as a range scan, on both engines. Piccolo
declares single-column indexes only, so these are plain SQL (the same on SQLite and PostgreSQL).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for lists of cases"

# name: columns. A patient's cases (newest first); the staff queues by state.
INDEXES = {
    "case_case_patient_created_at_id": "patient, created_at, id",
    "case_case_status_received_at_id": "status, received_at, id",
    "case_case_status_submitted_at_id": "status, submitted_at, id",
    "case_case_status_updated_at_id": "status, updated_at, id",
}


async def _run(statements: list[str]) -> None:
    engine = engine_finder()
    assert engine is not None
    for statement in statements:  # one a call: asyncpg refuses several at once
        await engine.run_ddl(statement)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="cases", description=DESCRIPTION)

    async def create() -> None:
        await _run(
            [
                f"CREATE INDEX IF NOT EXISTS {name} ON case_case ({columns})"
                for name, columns in INDEXES.items()
            ]
        )

    async def drop() -> None:
        await _run([f"DROP INDEX IF EXISTS {name}" for name in INDEXES])

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager

"""Indexes for the coordinators' board and its filters (core/cases/service.py cases_in,
QueueFilter).

The board lists every case on the clock, due soonest first: a partial index on (due_on, id) for
exactly those states gives the order without a sort, on both engines (SQLite uses a partial
index only when the query repeats its WHERE, which `cases_in` does). The doctor filter reads the
cases one doctor holds; the specialty filter narrows a state's queue in its order.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T10:00:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the board and the queue filters"

ON_THE_CLOCK = "'received', 'offered', 'assigned', 'in_review', 'awaiting_info'"
INDEXES = {
    "case_case_on_the_clock_due_on_id": f"(due_on, id) WHERE status IN ({ON_THE_CLOCK})",
    "case_case_assigned_doctor_status_due_on": "(assigned_doctor, status, due_on)",
    "case_case_status_specialty_received_at_id": "(status, specialty, received_at, id)",
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
                f"CREATE INDEX IF NOT EXISTS {name} ON case_case {columns}"
                for name, columns in INDEXES.items()
            ]
        )

    async def drop() -> None:
        await _run([f"DROP INDEX IF EXISTS {name}" for name in INDEXES])

    manager.add_raw(create)
    manager.add_raw_backwards(drop)
    return manager

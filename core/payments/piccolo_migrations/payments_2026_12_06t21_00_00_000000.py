"""Tell cases which of them are paid (Case.paid_at), as payments now reports it on settling.

Runs after the cases migration that adds the column (apps migrate in the registry's order).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-06T21:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "backfill Case.paid_at"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="payments", description=DESCRIPTION)

    class Payment(Table, tablename="payment_payment"):  # made per run: binds to this engine
        pass

    async def backfill():
        rows = await Payment.raw(
            'SELECT "case" AS case_id, MIN(paid_at) AS paid_at FROM payment_payment '
            "WHERE status = 'succeeded' AND paid_at IS NOT NULL GROUP BY \"case\""
        )
        for row in rows:
            await Payment.raw(
                "UPDATE case_case SET paid_at = {} WHERE id = {} AND paid_at IS NULL",
                row["paid_at"],
                row["case_id"],
            )

    manager.add_raw(backfill)
    return manager

"""The default fee schedule: what patients see until an admin changes it (/admin/fees)."""

import datetime
import uuid

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-04T17:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "default fee schedule"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="payments", description=DESCRIPTION)

    # Only for the raw query below; made per run, so it binds to the engine being migrated.
    class FeeRule(Table, tablename="payment_fee_rule"):
        pass

    async def default_fees():
        for label, country, currency, amount in (
            ("Residents of Pakistan", "PK", "PKR", 450_000),
            ("Everyone else", "", "USD", 6_500),
        ):
            await FeeRule.raw(
                "INSERT INTO payment_fee_rule "
                "(uid, label, country, specialty, currency, amount_minor, active, updated_at) "
                "VALUES ({}, {}, {}, '', {}, {}, {}, {})",
                uuid.uuid4(),
                label,
                country,
                currency,
                amount,
                True,
                datetime.datetime.now(datetime.timezone.utc),
            )

    manager.add_raw(default_fees)
    return manager

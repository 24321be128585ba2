"""Tell cases which checklist items their records satisfy (Case.records_in), as documents now
reports it whenever records change.

Runs after the cases migration that adds the column (apps migrate in the registry's order).
"""

import json
from collections import defaultdict

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-06T21:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "backfill Case.records_in"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="documents", description=DESCRIPTION)

    class Document(Table, tablename="document_document"):  # made per run: binds to this engine
        pass

    async def backfill():
        rows = await Document.raw(
            'SELECT DISTINCT "case" AS case_id, checklist_item FROM document_document '
            "WHERE status = 'complete' AND checklist_item IS NOT NULL"
        )
        items = defaultdict(set)
        for row in rows:
            items[row["case_id"]].add(row["checklist_item"])
        for case_id, keys in items.items():
            await Document.raw(
                "UPDATE case_case SET records_in = {} WHERE id = {}",
                json.dumps(sorted(keys)),
                case_id,
            )

    manager.add_raw(backfill)
    return manager

"""Fill Document.group_key from what plugins found in the files already there, and index it for
the case's record list (documents/listing.py: a page of lines, a group's files).

A record's group is `facts["group"]` (an imaging study's UID). Rows are read and written one
at a time in Python: the facts are JSON that SQLite stores as text and PostgreSQL as `json`,
and only the rows whose facts name a group are touched. Runs after the migration that adds the
column (raw steps run before a migration's schema steps).
"""

import json

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-06T23:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "backfill and index the group key of records"

INDEX = (
    "CREATE INDEX IF NOT EXISTS document_document_case_group_key_id "
    'ON document_document ("case", group_key, id)'
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="documents", description=DESCRIPTION)

    class Document(Table, tablename="document_document"):  # made per run: binds to this engine
        pass

    async def backfill():
        await Document.raw(INDEX)
        rows = await Document.raw(
            "SELECT id, facts FROM document_document WHERE CAST(facts AS TEXT) LIKE {}",
            '%"group"%',
        )
        for row in rows:
            facts = row["facts"]
            facts = json.loads(facts) if isinstance(facts, str) else facts
            group = facts.get("group") if isinstance(facts, dict) else None
            if group:
                await Document.raw(
                    "UPDATE document_document SET group_key = {} WHERE id = {}",
                    str(group)[:100],
                    row["id"],
                )

    async def undo():
        await Document.raw("DROP INDEX IF EXISTS document_document_case_group_key_id")

    manager.add_raw(backfill)
    manager.add_raw_backwards(undo)
    return manager

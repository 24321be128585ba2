"""Make Document.content_key unique and fill it, and the running usage totals, from the rows
already there.

A case holds the same content once from now on: the first complete (or unpacked) row of each
(case, SHA-256) takes the key; later copies from before this migration keep None and stay as
they are. The totals are the sums the upload limits used to compute on every upload. Both
statements are plain SQL that SQLite and PostgreSQL read alike. Runs after the migration that
adds the column and the table (raw steps run before a migration's schema steps).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-06T21:49:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique content keys; backfill content keys and usage totals"

FIRST_OF_EACH_CONTENT = (
    "UPDATE document_document "
    "SET content_key = CAST(\"case\" AS VARCHAR(20)) || ':' || sha256 "
    "WHERE id IN (SELECT MIN(id) FROM document_document "
    "WHERE status IN ('complete', 'expanded') AND sha256 <> '' GROUP BY \"case\", sha256)"
)
UNIQUE_INDEX = (
    "CREATE UNIQUE INDEX document_document_content_key ON document_document (content_key)"
)
CASE_TOTALS = (
    'INSERT INTO document_usage (scope, "case", "user", bytes) '
    'SELECT \'case:\' || CAST("case" AS VARCHAR(20)), "case", NULL, SUM(size) '
    "FROM document_document WHERE status = 'complete' GROUP BY \"case\""
)
ACCOUNT_TOTALS = (
    'INSERT INTO document_usage (scope, "case", "user", bytes) '
    "SELECT 'user:' || CAST(uploaded_by AS VARCHAR(20)), NULL, uploaded_by, SUM(size) "
    "FROM document_document WHERE status = 'complete' AND uploaded_by IS NOT NULL "
    "GROUP BY uploaded_by"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="documents", description=DESCRIPTION)

    class Document(Table, tablename="document_document"):  # made per run: binds to this engine
        pass

    async def backfill():
        for statement in (FIRST_OF_EACH_CONTENT, UNIQUE_INDEX, CASE_TOTALS, ACCOUNT_TOTALS):
            await Document.raw(statement)

    async def undo():
        await Document.raw("DROP INDEX IF EXISTS document_document_content_key")
        await Document.raw("DELETE FROM document_usage")

    manager.add_raw(backfill)
    manager.add_raw_backwards(undo)
    return manager

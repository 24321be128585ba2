"""The migration that brings running totals and content keys fills them from the rows already
there, on both engines: totals equal the sums the limits used to compute, the first row of each
content in a case takes its key, and the key is unique from then on."""

from __future__ import annotations

import importlib
import secrets

from core.cases import service as cases
from core.documents.tables import Document, DocumentUsage
from tests.support import make_person

MIGRATION = "core.documents.piccolo_migrations.documents_2026_12_06t21_49_00_000000"


def row(case_id: int, *, sha: str, size: int, status: str = "complete", by=None) -> Document:
    return Document(
        case=case_id,
        storage_key=secrets.token_hex(16),
        display_name="file",
        status=status,
        sha256=sha,
        size=size,
        uploaded_by=by,
    )


async def test_backfill_of_totals_and_content_keys(settings, app) -> None:
    patient = (await make_person("patient", "backfill@example.com")).user
    general = app.state.plugins.specialty("general")
    first = await cases.start_request(patient, general, ip=None)
    second = await cases.start_request(patient, general, ip=None)
    x, y, z = "a" * 64, "b" * 64, "c" * 64
    rows = [
        row(first.id, sha=x, size=10, by=patient.id),
        row(first.id, sha=x, size=10, by=patient.id),  # the same content twice, from before
        row(first.id, sha=y, size=5),  # a doctor's office, through a link
        row(first.id, sha="", size=0, status="uploading"),  # never finished
        row(first.id, sha=z, size=100, status="expanded", by=patient.id),  # an unpacked ZIP
        row(second.id, sha=x, size=10, by=patient.id),  # the same content in another case
    ]
    await Document.insert(*rows)
    # As before the migration: no totals, no keys, no unique index.
    await DocumentUsage.delete(force=True)
    await Document.raw("DROP INDEX document_document_content_key")

    migration = importlib.import_module(MIGRATION)
    manager = await migration.forwards()
    for step in manager.raw:
        await step()

    keys = [
        r["content_key"] for r in await Document.select(Document.content_key).order_by(Document.id)
    ]
    assert keys == [
        f"{first.id}:{x}",
        None,
        f"{first.id}:{y}",
        None,
        f"{first.id}:{z}",
        f"{second.id}:{x}",
    ]
    totals = {r["scope"]: r["bytes"] for r in await DocumentUsage.select()}
    assert totals == {
        f"case:{first.id}": 25,
        f"case:{second.id}": 10,
        f"user:{patient.id}": 30,
    }
    # Unique from now on: the same content cannot take a second row of the case.
    again = row(first.id, sha=x, size=10)
    again.content_key = f"{first.id}:{x}"
    assert await Document.insert(again).on_conflict(action="DO NOTHING") == []

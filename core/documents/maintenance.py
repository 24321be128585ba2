"""Operator tasks on stored records: master key rotation and the integrity scrub.

`rotate_master_key` adds a master key and re-wraps every data key under it (docs/security.md 19):
~60 bytes per row in the database, never a byte of a stored file. It works in batches, each in
its own transaction, and only touches rows that are not yet on the current key, so an
interrupted run is finished by `rewrap_data_keys` (or another rotation).

`scrub` re-reads every complete document to the end through `service.plaintext`, which checks
every segment's tag and the SHA-256 recorded at upload (docs/security.md 21), compares the store's
objects with the database's rows, and clears leftovers of interrupted writes. Plaintext is
discarded as it streams: memory stays at about one segment whatever the file sizes.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from core import db
from core.audit import service as audit
from core.cases.tables import Case
from core.documents import resumable
from core.documents.keyring import KeyringError
from core.documents.sealing import IntegrityError
from core.documents.service import COMPLETE, Records, plaintext
from core.documents.storage import ObjectNotFoundError
from core.documents.tables import Document

__all__ = [
    "BATCH_SIZE",
    "Problem",
    "RotationReport",
    "ScrubReport",
    "rewrap_data_keys",
    "rotate_master_key",
    "scrub",
]

log = logging.getLogger("consilium.documents.maintenance")

BATCH_SIZE = 200
INCOMPLETE_AFTER_SECONDS = 86_400.0  # a write unfinished for a day was interrupted by a crash


@dataclass(frozen=True)
class Problem:
    """One document that failed a check. No file name: the report may be mailed or logged."""

    uid: str
    case_reference: str
    problem: str

    def __str__(self) -> str:
        return f"{self.case_reference or '-'} document {self.uid}: {self.problem}"


@dataclass
class RotationReport:
    key_id: str  # the current master key after the run
    rewrapped: int = 0  # data keys now wrapped under key_id by this run
    already_current: int = 0  # rows that were on key_id already (skipped)
    failed: list[Problem] = field(default_factory=list)  # wrapped keys that would not unwrap
    remaining: int = 0  # rows still on an older key afterwards (failed, or written meanwhile)

    @property
    def complete(self) -> bool:
        return not self.failed and not self.remaining


@dataclass
class ScrubReport:
    checked: int = 0  # complete documents read to the end
    verified_bytes: int = 0  # plaintext bytes authenticated and hashed
    damaged: list[Problem] = field(default_factory=list)  # failed authentication or SHA-256
    missing: list[Problem] = field(default_factory=list)  # row complete, object gone
    orphans: list[str] = field(default_factory=list)  # objects no row refers to (storage keys)
    purged_incomplete: int = 0  # leftovers of interrupted writes removed

    @property
    def ok(self) -> bool:
        """No damage and nothing missing (orphans waste space but lose nothing)."""
        return not self.damaged and not self.missing


# Key rotation -----------------------------------------------------------------------------------


async def rotate_master_key(records: Records, *, batch_size: int = BATCH_SIZE) -> RotationReport:
    """Add a new master key, make it current (saved before use) and re-wrap every data key.

    Raises `KeyringError` when the keys are read-only (they come from the environment).
    Stored files are not read or written.
    """
    key_id = records.keyring.rotate()
    report = await rewrap_data_keys(records, batch_size=batch_size)
    await audit.record(
        "keys.rotate",
        actor_role="system",
        object_type="master_key",
        object_id=key_id,
        details={
            "rewrapped": report.rewrapped,
            "already_current": report.already_current,
            "failed": len(report.failed),
            "remaining": report.remaining,
        },
    )
    return report


async def rewrap_data_keys(records: Records, *, batch_size: int = BATCH_SIZE) -> RotationReport:
    """Re-wrap every data key not yet under the current master key (no new key is made).

    Rows are taken in id order, a batch at a time; each batch is written in one transaction,
    and a row is only updated if its wrapped key is still the one that was read (so a row
    changed meanwhile is left alone and counted in `remaining`).
    """
    keyring = records.keyring
    current = keyring.current_id
    report = RotationReport(key_id=current)
    report.already_current = await Document.count().where(Document.key_id == current)
    last_id = 0
    while True:
        rows = (
            await Document.select(
                Document.id,
                Document.uid,
                Document.file_id,
                Document.key_id,
                Document.wrapped_key,
                Document.case.reference,
            )
            .where((Document.id > last_id) & (Document.key_id != current))
            .order_by(Document.id)
            .limit(batch_size)
        )
        if not rows:
            break
        last_id = rows[-1]["id"]
        updates: list[tuple[dict[str, Any], str, str]] = []
        for row in rows:
            try:
                file_id = bytes.fromhex(row["file_id"])
                data_key = keyring.unwrap(
                    row["key_id"], base64.b64decode(row["wrapped_key"]), file_id=file_id
                )
                new_id, wrapped = keyring.wrap(data_key, file_id=file_id)
            except (KeyringError, ValueError) as error:
                report.failed.append(_problem(row, f"data key cannot be unwrapped: {error}"))
                continue
            updates.append((row, new_id, base64.b64encode(wrapped).decode()))
        async with db.transaction():
            for row, new_id, wrapped_text in updates:
                changed = await (
                    Document.update({Document.key_id: new_id, Document.wrapped_key: wrapped_text})
                    .where(
                        (Document.id == row["id"])
                        & (Document.key_id == row["key_id"])
                        & (Document.wrapped_key == row["wrapped_key"])
                    )
                    .returning(Document.id)
                )
                report.rewrapped += len(changed)
    report.remaining = await Document.count().where(Document.key_id != current)
    return report


# Scrub ------------------------------------------------------------------------------------------


async def scrub(records: Records, *, batch_size: int = BATCH_SIZE) -> ScrubReport:
    """Read every complete document to the end, list orphans and missing objects, and purge
    leftovers of interrupted writes older than a day."""
    report = ScrubReport()
    async for doc, case_reference in _complete_documents(batch_size):
        try:
            async with aclosing(plaintext(records, doc)) as stream:
                async for piece in stream:
                    report.verified_bytes += len(piece)
        except ObjectNotFoundError:
            if await _still_complete(doc):  # not deleted while we were reading it
                report.missing.append(
                    Problem(str(doc.uid), case_reference, "stored object is missing")
                )
            continue
        except IntegrityError as error:
            report.damaged.append(Problem(str(doc.uid), case_reference, f"damaged: {error}"))
        except KeyringError as error:
            report.damaged.append(Problem(str(doc.uid), case_reference, f"key: {error}"))
        except OSError as error:  # unreadable, not known to be damaged: still a problem
            problem = f"could not be read: {error.strerror or type(error).__name__}"
            report.damaged.append(Problem(str(doc.uid), case_reference, problem))
        report.checked += 1
    while await resumable.purge_expired(records):  # abandoned uploads, and their parts
        pass
    report.orphans = await _orphans(records, batch_size)
    report.purged_incomplete = await records.store.purge_incomplete(INCOMPLETE_AFTER_SECONDS)
    await audit.record(
        "documents.scrub",
        actor_role="system",
        outcome="success" if report.ok else "failure",
        details={
            "checked": report.checked,
            "damaged": len(report.damaged),
            "missing": len(report.missing),
            "orphans": len(report.orphans),
            "purged_incomplete": report.purged_incomplete,
        },
    )
    return report


async def _complete_documents(batch_size: int) -> AsyncIterator[tuple[Document, str]]:
    """Every complete document with its case reference, a batch at a time (keyset paging)."""
    last_id = 0
    while True:
        docs = (
            await Document.objects()
            .where((Document.id > last_id) & (Document.status == COMPLETE))
            .order_by(Document.id)
            .limit(batch_size)
        )
        if not docs:
            return
        last_id = docs[-1].id
        case_ids = list({doc.case for doc in docs})
        references = {
            row["id"]: row["reference"]
            for row in await Case.select(Case.id, Case.reference).where(Case.id.is_in(case_ids))
        }
        for doc in docs:
            yield doc, references.get(doc.case, "")


async def _still_complete(doc: Document) -> bool:
    return await Document.exists().where((Document.id == doc.id) & (Document.status == COMPLETE))


async def _orphans(records: Records, batch_size: int) -> list[str]:
    """Stored objects that no row (of any status) refers to; checked against the database a
    batch of keys at a time, so memory does not grow with the number of documents."""
    orphans: list[str] = []
    batch: list[str] = []

    async def check(keys: list[str]) -> None:
        known = {
            row["storage_key"]
            for row in await Document.select(Document.storage_key).where(
                Document.storage_key.is_in(keys)
            )
        }
        # Parts of an unfinished resumable upload ("<prefix>-<n>") belong to that upload.
        known_prefixes = await resumable.part_prefixes(
            sorted({key.rpartition("-")[0] for key in keys if key not in known and "-" in key})
        )
        for key in keys:
            if key.rpartition("-")[0] in known_prefixes:
                continue
            # Re-checked: an upload refused meanwhile removes its object and then its row.
            if key not in known and await records.store.exists(key):
                orphans.append(key)

    async with aclosing(records.store.keys()) as keys:  # type: ignore[type-var]
        async for key in keys:
            batch.append(key)
            if len(batch) >= batch_size:
                await check(batch)
                batch = []
    if batch:
        await check(batch)
    return orphans


def _problem(row: dict[str, Any], problem: str) -> Problem:
    return Problem(str(row["uid"]), row.get("case.reference") or "", problem)

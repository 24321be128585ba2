"""Master key rotation and the scrub: data keys re-wrapped without touching a stored file,
damage, orphans and missing objects found, and the CLI's exit codes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from litestar import Litestar

from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.documents.cli import documents_group, keys
from core.documents.keyring import Keyring, KeyringError
from core.documents.maintenance import rewrap_data_keys, rotate_master_key, scrub
from core.documents.service import Records, plaintext, store_upload
from core.documents.tables import Document
from core.plugins import PluginHost
from core.settings import Settings
from tests.conftest import make_settings
from tests.support import make_person, sign_in

MIB = 1024 * 1024
# Several segments (1 MiB each), a segment-sized one, a tiny one.
SIZES = (2 * MIB + 12_345, MIB, 700)


def pdf(size: int) -> bytes:
    head = b"%PDF-1.7\n"
    return head + os.urandom(size - len(head))


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for pos in range(0, len(data), size):
        yield data[pos : pos + size]


async def add_documents(
    records: Records, settings: Settings, contents: list[bytes], email: str | None = None
):
    """A patient, a case and its documents, stored through the service layer."""
    person = await make_person("patient", email)
    specialty = PluginHost.load(settings).specialty("general")
    assert specialty is not None
    case = await cases.start_request(person.user, specialty, ip=None)
    docs = []
    for number, data in enumerate(contents):
        docs.append(
            await store_upload(
                records,
                case,
                filename=f"scan-{number}.pdf",
                chunks=chunks_of(data),
                uploader=person.user,
            )
        )
    return person, case, docs


def object_path(settings: Settings, storage_key: str) -> Path:
    return settings.var_dir / "documents" / "objects" / storage_key[:2] / storage_key


def snapshot(settings: Settings) -> dict[Path, tuple]:
    """Every stored object: content hash, inode, size, modification and change times."""
    found = {}
    for path in (settings.var_dir / "documents" / "objects").rglob("*"):
        if path.is_file():
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[path] = (digest, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return found


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


async def read_back(records: Records, doc: Document) -> bytes:
    return b"".join([piece async for piece in plaintext(records, doc)])


# Rotation ---------------------------------------------------------------------------------------


async def test_rotation_rewraps_every_data_key_and_touches_no_file(
    client: httpx.AsyncClient, running_app: Litestar, settings: Settings
) -> None:
    records: Records = running_app.state.records
    contents = [pdf(size) for size in SIZES]
    person, case, docs = await add_documents(records, settings, contents)
    old_key = records.keyring.current_id
    before_rows = {row["id"]: row for row in await Document.select()}
    assert {row["key_id"] for row in before_rows.values()} == {old_key}
    before_files = snapshot(settings)
    assert len(before_files) == len(contents)
    await asyncio.sleep(0.01)  # a rewritten file would get a visibly later mtime

    report = await rotate_master_key(records, batch_size=2)  # several batches

    new_key = report.key_id
    assert new_key != old_key and records.keyring.current_id == new_key
    assert (report.rewrapped, report.already_current, report.failed, report.remaining) == (
        len(contents),
        0,
        [],
        0,
    )
    assert report.complete
    rows = await Document.select()
    assert {row["key_id"] for row in rows} == {new_key}
    for row in rows:  # a fresh wrapping, same file id and content fields
        before = before_rows[row["id"]]
        assert row["wrapped_key"] != before["wrapped_key"]
        assert len(base64.b64decode(row["wrapped_key"])) == 60
        for name in ("file_id", "storage_key", "sha256", "size", "segment_size", "status"):
            assert row[name] == before[name]
    assert snapshot(settings) == before_files  # same bytes, same inode, same times

    # The keyring on disk holds the new key as current and keeps the old one.
    on_disk = Keyring.load_or_create(settings.var_dir / "keyring.json")
    assert on_disk.current_id == new_key and set(on_disk.ids) == {old_key, new_key}

    # Downloads through the app, and reads with keys loaded afresh from disk, are unchanged.
    await sign_in(client, person)
    for doc, data in zip(docs, contents, strict=True):
        response = await client.get(f"/cases/{case.uid}/documents/{doc.uid}")
        assert response.status_code == 200 and response.content == data
    fresh = Records.open(settings)
    for doc in await Document.objects().order_by(Document.id):
        assert await read_back(fresh, doc) == contents[[d.id for d in docs].index(doc.id)]

    # One audit row, with counts only.
    [event] = await AuditEvent.objects().where(AuditEvent.action == "keys.rotate")
    assert event.object_id == new_key
    assert json.loads(event.details) == {
        "already_current": 0,
        "failed": 0,
        "rewrapped": len(contents),
        "remaining": 0,
    }

    # A second rotation works the same way, and every key stays.
    second = await rotate_master_key(records)
    assert second.key_id not in (old_key, new_key) and second.rewrapped == len(contents)
    assert {row["key_id"] for row in await Document.select(Document.key_id)} == {second.key_id}
    assert set(records.keyring.ids) == {old_key, new_key, second.key_id}
    assert snapshot(settings) == before_files
    for doc, data in zip(docs, contents, strict=True):
        response = await client.get(f"/cases/{case.uid}/documents/{doc.uid}")
        assert response.status_code == 200 and response.content == data


async def test_rewrap_resumes_and_reports_what_it_cannot_unwrap(settings: Settings) -> None:
    records = Records.open(settings)
    contents = [pdf(5_000) for _ in range(4)]
    _, case, docs = await add_documents(records, settings, contents)
    first = records.keyring.current_id

    # A rotation interrupted right after the new key was saved: nothing re-wrapped yet.
    second = records.keyring.rotate()
    # Meanwhile an upload is wrapped under the new key already.
    late = await store_upload(
        records, case, filename="late.pdf", chunks=chunks_of(pdf(3_000)), uploader=None
    )
    assert late.key_id == second
    # And one row's wrapped key is damaged.
    damaged = docs[0]
    wrapped = bytearray(base64.b64decode(damaged.wrapped_key))
    wrapped[20] ^= 0x01
    await Document.update({Document.wrapped_key: base64.b64encode(wrapped).decode()}).where(
        Document.id == damaged.id
    )

    report = await rewrap_data_keys(records, batch_size=3)
    assert report.key_id == second
    assert (report.rewrapped, report.already_current, report.remaining) == (3, 1, 1)
    [problem] = report.failed
    assert problem.uid == str(damaged.uid) and problem.case_reference == case.reference
    assert "cannot be unwrapped" in problem.problem
    assert not report.complete
    keys_now = {row["id"]: row["key_id"] for row in await Document.select()}
    assert keys_now.pop(damaged.id) == first and set(keys_now.values()) == {second}

    # Run again: only the damaged row is left, nothing is done twice.
    again = await rewrap_data_keys(records)
    assert (again.rewrapped, again.already_current, again.remaining) == (0, 4, 1)
    for doc, data in zip(docs[1:], contents[1:], strict=True):
        fresh = await Document.objects().where(Document.id == doc.id).first()
        assert await read_back(records, fresh) == data


def keys_json(keys: dict[str, bytes], current: str) -> str:
    """Master keys as CONSILIUM_MASTER_KEYS holds them (from a secret store)."""
    encoded = {key_id: base64.b64encode(key).decode() for key_id, key in keys.items()}
    return json.dumps({"current": current, "keys": encoded})


async def test_rotation_refuses_keys_from_the_environment(settings: Settings) -> None:
    env_settings = settings.model_copy(
        update={"master_keys": keys_json({"k-env-1": os.urandom(32)}, "k-env-1")}
    )
    records = Records.open(env_settings)
    await add_documents(records, env_settings, [pdf(2_000)])
    with pytest.raises(KeyringError, match="read-only"):
        await rotate_master_key(records)
    assert await Document.count().where(Document.key_id == "k-env-1") == 1


# Scrub ------------------------------------------------------------------------------------------


async def test_scrub_of_a_clean_store(settings: Settings) -> None:
    records = Records.open(settings)
    contents = [pdf(size) for size in SIZES]
    await add_documents(records, settings, contents)
    report = await scrub(records, batch_size=2)
    assert report.ok
    assert report.checked == len(contents)
    assert report.verified_bytes == sum(len(data) for data in contents)
    assert (report.damaged, report.missing, report.orphans) == ([], [], [])
    [event] = await AuditEvent.objects().where(AuditEvent.action == "documents.scrub")
    assert event.outcome == "success" and json.loads(event.details)["checked"] == len(contents)


async def test_scrub_finds_damage_orphans_and_missing_objects(settings: Settings) -> None:
    records = Records.open(settings)
    contents = [pdf(size) for size in SIZES] + [pdf(4_000)]
    _, case, docs = await add_documents(records, settings, contents)
    big, whole, small, gone = docs

    flip_byte(object_path(settings, big.storage_key), MIB + 500)  # inside segment 1
    # A row whose recorded SHA-256 no longer matches what was sealed (tags all verify).
    await Document.update({Document.sha256: "0" * 64}).where(Document.id == whole.id)
    object_path(settings, gone.storage_key).unlink()
    await records.store.put("0123456789abcdef0123456789abcdef", chunks_of(b"not a record"))
    # Leftovers of interrupted writes: one from two days ago is cleared, a fresh one is kept.
    tmp = settings.var_dir / "documents" / "tmp"
    stale, fresh = tmp / "stale-write", tmp / "fresh-write"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(stale, (two_days_ago, two_days_ago))

    report = await scrub(records)

    assert not report.ok
    assert report.checked == 3  # the missing one could not be read
    damaged = {problem.uid: problem for problem in report.damaged}
    assert set(damaged) == {str(big.uid), str(whole.uid)}
    assert "segment 1 failed authentication" in damaged[str(big.uid)].problem
    assert "SHA-256" in damaged[str(whole.uid)].problem
    assert all(problem.case_reference == case.reference for problem in report.damaged)
    [missing] = report.missing
    assert missing.uid == str(gone.uid) and missing.case_reference == case.reference
    assert report.orphans == ["0123456789abcdef0123456789abcdef"]
    assert report.purged_incomplete == 1 and not stale.exists() and fresh.exists()
    # The small one is fine, and nothing was changed by looking.
    assert await read_back(records, small) == contents[2]
    [event] = await AuditEvent.objects().where(AuditEvent.action == "documents.scrub")
    assert event.outcome == "failure"
    assert json.loads(event.details) == {
        "checked": 3,
        "damaged": 2,
        "missing": 1,
        "orphans": 1,
        "purged_incomplete": 1,
    }


# The commands -----------------------------------------------------------------------------------


def cli_env(settings: Settings, **extra: str | None) -> dict[str, str | None]:
    """The environment an operator's shell would have for these settings."""
    return {
        "CONSILIUM_VAR_DIR": str(settings.var_dir),
        "DATABASE_URL": settings.database_url,  # None unsets it: SQLite under the var dir
        "CONSILIUM_DATABASE_URL": None,
        "CONSILIUM_SECRET_KEY": settings.secret_key,
        "CONSILIUM_MASTER_KEYS": None,
        "CONSILIUM_DOCUMENTS_BACKEND": None,
        **extra,
    }


def test_commands_rotate_and_scrub(settings: Settings) -> None:
    records = Records.open(settings)
    contents = [pdf(size) for size in SIZES[:2]]
    _, case, docs = asyncio.run(add_documents(records, settings, contents))
    old_key = records.keyring.current_id
    before_files = snapshot(settings)
    runner = CliRunner()
    env = cli_env(settings)

    rotated = runner.invoke(keys, ["rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    new_key = Keyring.load_or_create(settings.var_dir / "keyring.json").current_id
    assert new_key != old_key
    assert f"new master key: {new_key}" in rotated.output
    assert f"re-wrapped {len(contents)} data key(s)" in rotated.output
    rows = asyncio.run(Document.select(Document.key_id).run())
    assert {row["key_id"] for row in rows} == {new_key}
    assert snapshot(settings) == before_files

    rewrapped = runner.invoke(keys, ["rewrap"], env=env)
    assert rewrapped.exit_code == 0, rewrapped.output
    assert "re-wrapped 0 data key(s), 2 already under it" in rewrapped.output

    clean = runner.invoke(documents_group, ["scrub"], env=env)
    assert clean.exit_code == 0, clean.output
    assert "checked 2 document(s)" in clean.output and "0 damaged, 0 missing" in clean.output

    flip_byte(object_path(settings, docs[1].storage_key), 40)
    damaged = runner.invoke(documents_group, ["scrub"], env=env)
    assert damaged.exit_code == 1, damaged.output
    [line] = [line for line in damaged.output.splitlines() if line.startswith("DAMAGED")]
    assert str(docs[1].uid) in line and case.reference in line and "scan-1" not in line
    assert "1 damaged, 0 missing" in damaged.output


def test_scrub_command_orphan_alone_passes_missing_object_fails(settings: Settings) -> None:
    records = Records.open(settings)
    _, case, [doc] = asyncio.run(add_documents(records, settings, [pdf(3_000)]))
    asyncio.run(records.store.put("ffff0000ffff0000ffff0000ffff0000", chunks_of(b"stray")))
    runner = CliRunner()
    env = cli_env(settings)

    orphan = runner.invoke(documents_group, ["scrub"], env=env)
    assert orphan.exit_code == 0, orphan.output
    assert "ORPHAN  object ffff0000ffff0000ffff0000ffff0000" in orphan.output

    object_path(settings, doc.storage_key).unlink()
    missing = runner.invoke(documents_group, ["scrub"], env=env)
    assert missing.exit_code == 1, missing.output
    [line] = [line for line in missing.output.splitlines() if line.startswith("MISSING")]
    assert str(doc.uid) in line and case.reference in line


def test_rotate_command_refuses_environment_keys_and_rewrap_follows_them(
    tmp_path: Path, database_url: str | None, settings: Settings
) -> None:
    master_keys = {"k-env-1": os.urandom(32)}
    old_env = keys_json(master_keys, "k-env-1")
    with_env_keys = make_settings(tmp_path, database_url, master_keys=old_env)
    records = Records.open(with_env_keys)
    asyncio.run(add_documents(records, with_env_keys, [pdf(2_000), pdf(3_000)]))
    assert not (tmp_path / "keyring.json").exists()
    runner = CliRunner()

    refused = runner.invoke(keys, ["rotate"], env=cli_env(settings, CONSILIUM_MASTER_KEYS=old_env))
    assert refused.exit_code == 1
    assert "CONSILIUM_MASTER_KEYS" in refused.output and "secret store" in refused.output
    assert not (tmp_path / "keyring.json").exists()

    # The operator rotates in the secret store (adds a key, makes it current), then re-wraps.
    master_keys["k-env-2"] = os.urandom(32)
    env = cli_env(settings, CONSILIUM_MASTER_KEYS=keys_json(master_keys, "k-env-2"))
    rewrapped = runner.invoke(keys, ["rewrap"], env=env)
    assert rewrapped.exit_code == 0, rewrapped.output
    assert "current master key: k-env-2; re-wrapped 2 data key(s)" in rewrapped.output
    rows = asyncio.run(Document.select(Document.key_id).run())
    assert {row["key_id"] for row in rows} == {"k-env-2"}
    assert runner.invoke(documents_group, ["scrub"], env=env).exit_code == 0


def test_commands_refuse_a_var_dir_without_keys(tmp_path: Path, settings: Settings) -> None:
    """A mistyped CONSILIUM_VAR_DIR must not get a fresh keyring that opens nothing."""
    elsewhere = make_settings(tmp_path / "elsewhere", settings.database_url)
    runner = CliRunner()
    for group, command in ((keys, "rotate"), (keys, "rewrap"), (documents_group, "scrub")):
        result = runner.invoke(group, [command], env=cli_env(elsewhere))
        assert result.exit_code == 1 and "no keyring at" in result.output, result.output
    assert not (tmp_path / "elsewhere" / "keyring.json").exists()

"""Object storage for sealed documents: every behaviour against the local store and a real
S3 server (SeaweedFS, started once per session; a fresh bucket per test)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from core.documents.storage import (
    LocalStore,
    ObjectNotFoundError,
    ObjectStore,
    S3Store,
    validate_key,
)
from tests.seaweed import SeaweedServer, seaweed_fixture
from tests.support import csrf_token

MiB = 1 << 20
PART = 5 * MiB  # the S3 minimum, so multipart paths run with little data

seaweed = seaweed_fixture(scope="session")


class Boom(RuntimeError):
    pass


def new_key() -> str:
    return uuid.uuid4().hex


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def read_all(store: ObjectStore, key: str, **kwargs: int) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, **kwargs)])


async def s3_store(server: SeaweedServer, bucket: str, part_size: int = PART) -> S3Store:
    store = S3Store(
        server.endpoint_url,
        bucket,
        server.access_key,
        server.secret_key,
        region=server.region,
        part_size=part_size,
    )
    await store.ensure_bucket()
    return store


async def empty_bucket(store: S3Store) -> None:
    client = await store._get_client()
    for key, upload_id, _ in await store.pending_uploads():
        await client.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload_id)
    async for key in store.keys():
        await store.delete(key)
    await client.delete_bucket(Bucket=store.bucket)


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    server: SeaweedServer = request.getfixturevalue("seaweed")
    s3 = await s3_store(server, f"test-{uuid.uuid4().hex[:16]}")
    try:
        yield s3
    finally:
        await empty_bucket(s3)
        await s3.aclose()


async def leftovers(store: ObjectStore) -> list[str]:
    """Incomplete writes still lying around: temp files or pending multipart uploads."""
    if isinstance(store, LocalStore):
        return sorted(os.listdir(store.root / "tmp"))
    assert isinstance(store, S3Store)
    return [key for key, _, _ in await store.pending_uploads()]


async def etag(store: S3Store, key: str) -> str:
    client = await store._get_client()
    return str((await client.head_object(Bucket=store.bucket, Key=key))["ETag"])


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunk"),
    [(0, 1), (1000, 100), (PART, MiB), (20 * MiB, MiB), (PART + 1, 3 * MiB + 7)],
    ids=["empty", "small", "exactly-one-part", "20MiB-multipart", "part-plus-one-odd-chunks"],
)
async def test_round_trip(store: ObjectStore, size: int, chunk: int) -> None:
    data = os.urandom(size)
    key = new_key()
    written = await store.put(key, stream(pieces(data, chunk)))
    assert written == size
    assert await store.exists(key)
    assert await store.size(key) == size
    back = hashlib.sha256()
    async for part in store.read(key):
        assert len(part) <= MiB
        back.update(part)
    assert back.hexdigest() == hashlib.sha256(data).hexdigest()
    assert await leftovers(store) == []
    if isinstance(store, S3Store):
        # At most one part: a single PutObject; more: a multipart upload ("<md5>-<parts>").
        parts = -(-size // PART)
        assert etag_parts(await etag(store, key)) == (parts if parts > 1 else None)


def etag_parts(value: str) -> int | None:
    value = value.strip('"')
    return int(value.rsplit("-", 1)[1]) if "-" in value else None


async def test_open_write_incremental(store: ObjectStore) -> None:
    key = new_key()
    data = os.urandom(PART * 2 + 123)
    async with store.open_write(key) as writer:
        for piece in pieces(data, 777_777):
            await writer.write(piece)
            assert not await store.exists(key)  # nothing visible before commit
        await writer.write(b"")
    assert writer.bytes_written == len(data)
    assert await read_all(store, key) == data
    with pytest.raises(RuntimeError):
        await writer.write(b"more")


async def test_range_reads(store: ObjectStore) -> None:
    data = os.urandom(3 * MiB + 5)
    key = new_key()
    await store.put(key, stream([data]))
    cases = [
        (0, None),
        (0, 1),
        (1, 2),
        (MiB - 1, MiB + 1),
        (12345, 2 * MiB + 999),
        (len(data) - 1, None),
        (len(data) - 10, len(data) + 100),  # end past the object: clamped
        (len(data), None),  # start at the end: nothing
        (len(data) + 50, len(data) + 60),  # start past the end: nothing
        (77, 77),  # empty range
    ]
    for start, end in cases:
        assert await read_all(store, key, start=start, end=end) == data[start:end], (start, end)
    chunks = [chunk async for chunk in store.read(key, 10, 10 + 1000, chunk_size=300)]
    assert [len(chunk) for chunk in chunks] == [300, 300, 300, 100]
    assert b"".join(chunks) == data[10:1010]
    big = [len(chunk) async for chunk in store.read(key, chunk_size=2 * MiB)]
    assert big == [2 * MiB, MiB + 5]
    assert await store.read_range(key, 100, 50) == data[100:150]
    assert await store.read_range(key, 2 * MiB, MiB) == data[2 * MiB : 3 * MiB]
    assert await store.read_range(key, len(data) - 3, 10) == data[-3:]
    assert await store.read_range(key, 5, 0) == b""
    with pytest.raises(ValueError):
        store.read(key, 10, 5)
    with pytest.raises(ValueError):
        store.read(key, -1)
    with pytest.raises(ValueError):
        await store.read_range(key, 0, -1)


async def test_stopping_a_read_early_releases_it(store: ObjectStore) -> None:
    key = new_key()
    await store.put(key, stream([os.urandom(4 * MiB)]))
    async with asyncio.timeout(30):  # a leaked GET would hold a pooled connection: a hang
        readers = []  # kept referenced: only aclose() can give their connections back
        for _ in range(30):  # more than the connection pool (20)
            reader = store.read(key, chunk_size=MiB)
            readers.append(reader)
            async with contextlib.aclosing(reader):  # type: ignore[type-var]
                async for _chunk in reader:
                    break
        assert len(await store.read_range(key, 0, 4)) == 4


async def test_missing_objects(store: ObjectStore) -> None:
    key = new_key()
    assert not await store.exists(key)
    with pytest.raises(ObjectNotFoundError):
        await store.size(key)
    with pytest.raises(ObjectNotFoundError):
        await read_all(store, key)
    with pytest.raises(ObjectNotFoundError):
        await store.read_range(key, 0, 10)
    with pytest.raises(ObjectNotFoundError):
        await store.read_range(key, 0, 0)
    with pytest.raises(ObjectNotFoundError):
        await read_all(store, key, start=5)


@pytest.mark.parametrize("fail_after", [0, 3 * MiB, 12 * MiB], ids=["start", "small", "multipart"])
async def test_exception_mid_put_leaves_nothing(store: ObjectStore, fail_after: int) -> None:
    key = new_key()

    async def failing() -> AsyncIterator[bytes]:
        sent = 0
        while sent < fail_after:
            yield os.urandom(MiB)
            sent += MiB
        raise Boom("client went away")

    with pytest.raises(Boom):
        await store.put(key, failing())
    assert not await store.exists(key)
    assert [k async for k in store.keys()] == []
    assert await leftovers(store) == []


async def test_exception_in_open_write_block_leaves_nothing(store: ObjectStore) -> None:
    key = new_key()
    with pytest.raises(Boom):
        async with store.open_write(key) as writer:
            for _ in range(2 * PART // MiB + 1):
                await writer.write(os.urandom(MiB))
            raise Boom("sealing failed")
    assert not await store.exists(key)
    assert await leftovers(store) == []
    await writer.abort()  # idempotent
    with pytest.raises(RuntimeError):
        await writer.commit()


async def test_cancelled_write_leaves_nothing(store: ObjectStore) -> None:
    key = new_key()
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(PART // MiB + 2):  # past one part: a multipart upload is pending
            yield os.urandom(MiB)
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put(key, slow()))
    await asyncio.wait_for(started.wait(), 20)
    await asyncio.sleep(0.05)
    assert await leftovers(store) != []  # the write really is in progress
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.exists(key)
    assert await leftovers(store) == []


async def test_failed_overwrite_keeps_old_object(store: ObjectStore) -> None:
    key = new_key()
    old = os.urandom(2 * MiB)
    await store.put(key, stream([old]))

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(PART // MiB + 1):
            yield os.urandom(MiB)
        raise Boom

    with pytest.raises(Boom):
        await store.put(key, failing())
    assert await read_all(store, key) == old
    assert await leftovers(store) == []


async def test_overwrite_replaces_atomically(store: ObjectStore) -> None:
    key = new_key()
    old = os.urandom(PART + MiB)
    new = os.urandom(2 * PART + 3)
    await store.put(key, stream(pieces(old, MiB)))
    async with store.open_write(key) as writer:
        for piece in pieces(new, MiB):
            await writer.write(piece)
            # Until the commit every reader sees the whole old object.
            assert await store.size(key) == len(old)
        assert await read_all(store, key) == old
    assert await store.size(key) == len(new)
    assert hashlib.sha256(await read_all(store, key)).digest() == hashlib.sha256(new).digest()
    assert [k async for k in store.keys()] == [key]
    assert await leftovers(store) == []


async def test_reader_during_overwrite_never_sees_a_mix(store: ObjectStore) -> None:
    key = new_key()
    old = b"A" * (12 * MiB)
    await store.put(key, stream([old]))
    reader = store.read(key, chunk_size=64 * 1024)
    got = [await anext(reader)]
    await store.put(key, stream([b"B" * (12 * MiB)]))
    try:
        async for chunk in reader:
            got.append(chunk)
    except Exception:  # a back end may cut a read whose object was replaced, never mix it
        got = None  # type: ignore[assignment]
    finally:
        await reader.aclose()  # type: ignore[attr-defined]
    if got is not None:
        assert b"".join(got) == old
    assert await read_all(store, key, end=10) == b"B" * 10


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    key = new_key()
    await store.delete(key)  # never existed
    await store.put(key, stream([b"sealed bytes"]))
    await store.delete(key)
    assert not await store.exists(key)
    await store.delete(key)
    with pytest.raises(ObjectNotFoundError):
        await store.size(key)


async def test_keys_lists_every_object(store: ObjectStore) -> None:
    assert [key async for key in store.keys()] == []
    expected = {new_key() for _ in range(5)} | {"documents/" + new_key(), "ab", "a"}
    for key in expected:
        await store.put(key, stream([key.encode()]))
    assert sorted([key async for key in store.keys()]) == sorted(expected)
    await store.delete("ab")
    assert "ab" not in {key async for key in store.keys()}


BAD_KEYS = [
    "",
    "A" + "0" * 31,
    "../etc/passwd",
    "a/../b",
    "a..b",
    "/absolute",
    "a//b",
    "trailing/",
    "-leading-dash",
    "_leading",
    "with space",
    "dot.ted",
    "nul\x00byte",
    "newline\n",
    "é" + "0" * 31,
    "a" * 202,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        validate_key(key)


async def test_every_operation_refuses_invalid_keys(store: ObjectStore) -> None:
    for key in BAD_KEYS:
        with pytest.raises(ValueError):
            await store.put(key, stream([b"x"]))
        with pytest.raises(ValueError):
            store.open_write(key)
        with pytest.raises(ValueError):
            store.read(key)
        with pytest.raises(ValueError):
            await store.read_range(key, 0, 1)
        with pytest.raises(ValueError):
            await store.size(key)
        with pytest.raises(ValueError):
            await store.exists(key)
        with pytest.raises(ValueError):
            await store.delete(key)
    assert validate_key("a" * 201) == "a" * 201
    assert [key async for key in store.keys()] == []
    assert await leftovers(store) == []


async def test_purge_incomplete_removes_crash_leftovers(store: ObjectStore) -> None:
    key = new_key()
    writer = store.open_write(key)
    await writer.__aenter__()
    for _ in range(PART // MiB + 1):
        await writer.write(os.urandom(MiB))
    # The process "dies" here: the writer is never committed nor aborted.
    assert len(await leftovers(store)) == 1
    assert await store.purge_incomplete(older_than=3600) == 0
    assert await store.purge_incomplete(older_than=-60) == 1
    assert await leftovers(store) == []
    assert not await store.exists(key)
    if isinstance(store, LocalStore):
        await writer.abort()  # closes the descriptor this test left open


def test_local_store_is_a_store(tmp_path: Path) -> None:
    assert isinstance(LocalStore(tmp_path), ObjectStore)
    assert isinstance(S3Store("http://127.0.0.1:9", "bucket", "a", "b"), ObjectStore)
    with pytest.raises(ValueError):
        S3Store("http://127.0.0.1:9", "bucket", "a", "b", part_size=MiB)
    assert "secret" not in repr(S3Store("http://127.0.0.1:9", "bucket", "a", "secret"))


async def test_local_files_and_folders_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        store = LocalStore(tmp_path / "store")
        await store.put("0123456789abcdef", stream([b"x" * 100]))
        await store.put("docs/nested/fedcba", stream([b"y"]))
        writer = store.open_write("pending")
        await writer.__aenter__()
        await writer.write(b"z")
        (temp,) = (tmp_path / "store" / "tmp").iterdir()
        assert stat.S_IMODE(temp.stat().st_mode) == 0o600
        await writer.abort()
    finally:
        os.umask(old_umask)
    root = tmp_path / "store"
    files = [p for p in root.rglob("*") if p.is_file()]
    folders = [root, *[p for p in root.rglob("*") if p.is_dir()]]
    assert {p.relative_to(root).as_posix() for p in files} == {
        "objects/01/0123456789abcdef",
        "objects/do/docs/nested/fedcba",
    }
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o600)}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o700)}
    assert list((root / "tmp").iterdir()) == []


async def test_local_objects_are_written_back_while_they_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large objects are flushed to disk every 64 MiB during the write, so the commit's fsync has
    little left; a write-back that fails fails the write and leaves nothing (fsyncgate: the
    error may not be reported again by the final fsync)."""
    import core.documents.storage as storage

    flushed: list[int] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        flushed.append(os.fstat(fd).st_size)
        real(fd)

    async def arriving(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            await asyncio.sleep(0)  # as from the network: the event loop runs between pieces
            yield piece

    monkeypatch.setattr(storage.os, "fdatasync", recording)
    store = LocalStore(tmp_path / "store")
    piece = b"x" * MiB
    await store.put("big", arriving(130))
    # Started once 64 MiB were in, while the rest was still arriving (not at the end).
    assert flushed and 64 * MiB <= flushed[0] < 130 * MiB

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage.os, "fdatasync", failing)
    with pytest.raises(OSError):
        await store.put("broken", arriving(130))
    assert not await store.exists("broken")
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


async def test_local_read_does_not_follow_symlinks(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    secret = tmp_path / "outside"
    secret.write_bytes(b"not a document")
    (tmp_path / "store" / "objects" / "ev").mkdir()
    (tmp_path / "store" / "objects" / "ev" / "evil").symlink_to(secret)
    with pytest.raises(ObjectNotFoundError):
        await read_all(store, "evil")
    with pytest.raises(ObjectNotFoundError):
        await store.size("evil")
    assert not await store.exists("evil")


async def test_s3_memory_stays_bounded(seaweed: SeaweedServer) -> None:
    part_size = 8 * MiB
    store = await s3_store(seaweed, f"mem-{uuid.uuid4().hex[:16]}", part_size=part_size)
    key = new_key()
    digest = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            yield chunk

    try:
        await store.exists("warm-up")  # create the client before measuring
        tracemalloc.start()
        try:
            written = await store.put(key, chunks())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert written == 64 * MiB
        assert peak < 3 * part_size, f"peak {peak / MiB:.1f} MiB"
        back = hashlib.sha256()
        async for chunk in store.read(key):
            back.update(chunk)
        assert back.digest() == digest.digest()
        assert etag_parts(await etag(store, key)) == 8
    finally:
        await empty_bucket(store)
        await store.aclose()


async def test_s3_ensure_bucket_creates_once(seaweed: SeaweedServer) -> None:
    bucket = f"ensure-{uuid.uuid4().hex[:12]}"
    store = await s3_store(seaweed, bucket)
    try:
        await store.ensure_bucket()  # already there: no error
        client = await store._get_client()
        names = [b["Name"] for b in (await client.list_buckets())["Buckets"]]
        assert names.count(bucket) == 1
    finally:
        await empty_bucket(store)
        await store.aclose()


async def test_s3_wrong_secret_is_refused(seaweed: SeaweedServer) -> None:
    store = S3Store(seaweed.endpoint_url, "any-bucket", seaweed.access_key, "wrong-secret")
    try:
        with pytest.raises(Exception, match=r"(?i)denied|signature|forbidden|403"):
            await store.ensure_bucket()
    finally:
        await store.aclose()


async def test_s3_backend_through_the_app(
    seaweed: SeaweedServer, tmp_path: Path, database_url: str | None
) -> None:
    """The app configured for S3 (nothing else prepared): its start creates the bucket; a
    one-request and a resumable upload go in sealed and come back bit-identical; the bucket
    holds exactly the two records (no upload parts left), and no plaintext."""
    from core.documents.tables import Document
    from tests.conftest import make_app, make_settings, open_client
    from tests.test_documents import CANARY, PDF, files_under, new_case, upload

    bucket = f"app-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        tmp_path,
        database_url,
        documents_backend="s3",
        s3_endpoint_url=seaweed.endpoint_url,
        s3_bucket=bucket,
        s3_access_key=seaweed.access_key,
        s3_secret_key=seaweed.secret_key,
        s3_region=seaweed.region,
        upload_chunk_bytes=MiB,
    )
    app = make_app(settings)
    chunked = b"%PDF-1.7\n" + os.urandom(MiB) + CANARY + os.urandom(2 * MiB) + b"\n%%EOF\n"
    store = S3Store(
        seaweed.endpoint_url, bucket, seaweed.access_key, seaweed.secret_key, seaweed.region
    )
    try:
        async with app.lifespan(), open_client(app) as client:
            # Made by the app's start, before any upload (SeaweedFS, unlike AWS, would also
            # make it on the first write).
            listed = await (await store._get_client()).list_buckets()
            assert bucket in [b["Name"] for b in listed["Buckets"]]
            _, uid = await new_case(client, "s3-app@example.com")
            sent = await upload(client, uid, "report.pdf", PDF, token_in="header")
            assert sent.status_code == 303, sent.text

            script = {"x-csrftoken": csrf_token(client), "x-upload-client": "1"}
            state = (
                await client.post(
                    f"/cases/{uid}/uploads",
                    data={"filename": "study.pdf", "size": str(len(chunked))},
                    headers=script,
                )
            ).json()
            assert state["chunks"] == 4, state
            for number in range(4):
                answer = await client.put(
                    f"/cases/{uid}/uploads/{state['upload']}/chunks/{number}",
                    content=chunked[number * MiB : (number + 1) * MiB],
                    headers=script,
                )
                assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "done"

            docs = {doc.display_name: doc for doc in await Document.objects()}
            assert sorted(docs) == ["report.pdf", "study.pdf"]
            for name, data in (("report.pdf", PDF), ("study.pdf", chunked)):
                got = await client.get(f"/cases/{uid}/documents/{docs[name].uid}")
                assert got.status_code == 200 and got.content == data

        keys = sorted([key async for key in store.keys()])
        assert keys == sorted(doc.storage_key for doc in docs.values())
        for key in keys:
            assert CANARY not in await read_all(store, key)
        assert await store.pending_uploads() == []
        assert not files_under(tmp_path / "documents")  # nothing went to the local store
    finally:
        with contextlib.suppress(Exception):
            await empty_bucket(store)
        await store.aclose()

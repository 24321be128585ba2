"""Byte storage for sealed (already encrypted) documents.

One async interface, two back ends:

- `LocalStore(root)`: files under `root/objects/<first 2 chars>/<key>`, written to
  `root/tmp/<random>` (0600), fsynced, renamed into place, directory fsynced (docs/security.md 20).
- `S3Store(...)`: any S3-compatible store (AWS, SeaweedFS, MinIO, Ceph RGW) through aiobotocore;
  multipart upload in parts of `part_size`, aborted on error; ranged GETs for reads.

Writes are atomic: a reader sees the old object or the new one, never a part; a write that fails
or is cancelled leaves nothing behind (no temp file, no pending multipart upload).

Keys are random ids chosen by the caller (docs/security.md 17) and are validated; they never carry a
file name or anything about a patient. Reads are async generators: iterate them with
`async for`, and close them (`contextlib.aclosing`) when stopping early so the file or
connection is released at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import secrets
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

KEY_PATTERN = re.compile(r"[a-z0-9][a-z0-9/_-]{0,200}")
MiB = 1 << 20
DEFAULT_CHUNK_SIZE = MiB
# Writes and reads up to this size run directly on the event loop (measured: a thread hop per
# write made uploads slower, bench/README.md); bigger buffers are cut into slices of this size.
DIRECT_IO_LIMIT = MiB
S3_MIN_PART_SIZE = 5 * MiB
S3_MAX_PARTS = 10_000
# End-to-end integrity of every PutObject/UploadPart, as boto3's transfer manager does.
DEFAULT_CHECKSUM_ALGORITHM = "CRC32"


class ObjectNotFoundError(FileNotFoundError):
    """No object under this key (both stores raise this, never a back-end error)."""


def validate_key(key: str) -> str:
    """Return `key` if it is a valid object key, else raise ValueError.

    `^[a-z0-9][a-z0-9/_-]{0,200}$`, no `..`, no empty path segment (`//` or a trailing `/`).
    """
    if (
        not isinstance(key, str)
        or KEY_PATTERN.fullmatch(key) is None
        or ".." in key
        or "//" in key
        or key.endswith("/")
    ):
        raise ValueError("invalid object key")
    return key


def _check_range(start: int, end: int | None, chunk_size: int = 1) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range [{start}, {end})")
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")


class ObjectWriter(ABC):
    """Incremental writer: `async with store.open_write(key) as w: await w.write(b)`.

    The object appears when the block exits normally and not at all when it exits with an
    exception (including cancellation). `commit()`/`abort()` may also be called directly.
    """

    def __init__(self, key: str) -> None:
        self.key = validate_key(key)
        self.bytes_written = 0
        self._state = "new"  # new -> open -> committing -> committed | aborted

    @abstractmethod
    async def _open(self) -> None: ...

    @abstractmethod
    async def _write(self, data: memoryview) -> None: ...

    @abstractmethod
    async def _commit(self) -> None: ...

    @abstractmethod
    async def _abort(self) -> None: ...

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state == "new":
            await self._open()
            self._state = "open"
        if self._state != "open":
            raise RuntimeError(f"write on a {self._state} writer")
        view = memoryview(data).cast("B")
        if view:
            await self._write(view)
            self.bytes_written += len(view)

    async def commit(self) -> int:
        """Make the object visible under its key; return its size."""
        if self._state == "new":
            await self._open()
            self._state = "open"
        if self._state != "open":
            raise RuntimeError(f"commit on a {self._state} writer")
        self._state = "committing"
        try:
            await self._commit()  # cleans up after itself when it fails
        except BaseException:
            self._state = "aborted"
            raise
        self._state = "committed"
        return self.bytes_written

    async def abort(self) -> None:
        """Discard everything written; idempotent."""
        if self._state in ("new", "open"):
            self._state = "aborted"
            await self._abort()

    async def __aenter__(self) -> Self:
        if self._state == "new":
            await self._open()
            self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit()
        else:
            await self.abort()


@runtime_checkable
class ObjectStore(Protocol):
    """Where sealed document bytes live. Keys: see `validate_key`."""

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store a stream atomically under `key`; return the number of bytes written."""
        ...

    def open_write(self, key: str) -> ObjectWriter:
        """An async context manager that commits on normal exit and aborts on an exception."""
        ...

    def read(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) (clamped to the object's size) in `chunk_size` chunks.

        Use `async for chunk in store.read(key)` (no await). A missing key raises
        ObjectNotFoundError on the first iteration; an invalid key raises ValueError at once.
        """
        ...

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from `start` (fewer only at the end of the object)."""
        ...

    async def size(self, key: str) -> int: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the object; no error when it does not exist."""
        ...

    def keys(self) -> AsyncIterator[str]:
        """Every stored key (for the scrub command); order unspecified."""
        ...

    async def purge_incomplete(self, older_than: float = 86_400.0) -> int:
        """Remove leftovers of writes interrupted by a crash (temp files, multipart uploads)
        started more than `older_than` seconds ago; return how many."""
        ...

    async def aclose(self) -> None: ...


async def _put_with(store: ObjectStore, key: str, chunks: AsyncIterable[bytes]) -> int:
    async with store.open_write(key) as writer:
        async for chunk in chunks:
            await writer.write(chunk)
    return writer.bytes_written


async def _read_all(store: ObjectStore, key: str, start: int, length: int) -> bytes:
    if length < 0:
        raise ValueError("length must not be negative")
    parts = []
    reader = store.read(key, start, start + length, chunk_size=max(length, 1))
    async with contextlib.aclosing(reader):  # type: ignore[type-var]
        async for chunk in reader:
            parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# --------------------------------------------------------------------------------------------
# Local file system


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path, stop: Path) -> None:
    """Create `path` and missing parents below `stop` with mode 0700, fsyncing each parent."""
    if path.is_dir():
        return
    missing = []
    current = path
    while current != stop and not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue
        _fsync_dir(directory.parent)


BACKGROUND_FLUSH_BYTES = 64 << 20  # a local object is written back to disk this often


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _LocalWriter(ObjectWriter):
    def __init__(self, store: LocalStore, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._final = store._path(key)
        self._tmp: Path | None = None
        self._fd: int | None = None
        self._unflushed = 0
        self._flushing: asyncio.Future[None] | None = None

    async def _open(self) -> None:
        self._tmp = self._store._tmp / secrets.token_hex(16)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        self._fd = os.open(self._tmp, flags, 0o600)

    async def _write(self, data: memoryview) -> None:
        assert self._fd is not None
        for offset in range(0, len(data), DIRECT_IO_LIMIT):
            if offset:
                await asyncio.sleep(0)  # let other tasks run between 1 MiB writes
            _write_all(self._fd, data[offset : offset + DIRECT_IO_LIMIT])
        self._unflushed += len(data)
        if self._unflushed >= BACKGROUND_FLUSH_BYTES and (
            self._flushing is None or self._flushing.done()
        ):
            # Write back while the rest arrives, so the final fsync has little left to do.
            await self._settle_flush()
            self._unflushed = 0
            self._flushing = asyncio.ensure_future(asyncio.to_thread(os.fdatasync, self._fd))

    async def _settle_flush(self) -> None:
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            await flushing

    async def _commit(self) -> None:
        await self._settle_flush()
        fd, tmp, final, objects = self._fd, self._tmp, self._final, self._store._objects
        assert fd is not None and tmp is not None
        self._fd = None  # owned by the thread from here on, which closes it whatever happens

        def finish() -> None:
            try:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _make_dirs(final.parent, objects)
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(final.parent)

        await asyncio.to_thread(finish)

    async def _abort(self) -> None:
        try:
            with contextlib.suppress(Exception):
                await self._settle_flush()  # the fd must outlive the flush thread using it
        finally:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
            if self._tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._tmp)


class LocalStore:
    """Objects as files under `root/objects/<first 2 chars>/<key>` (folders 0700, files 0600)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        for directory in (self.root, self._objects, self._tmp):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, 0o700)
            if not directory.is_dir():
                raise NotADirectoryError(directory)

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self._objects / key[:2].replace("/", "_") / key

    def open_write(self, key: str) -> ObjectWriter:
        return _LocalWriter(self, key)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        return await _put_with(self, key, chunks)

    def read(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        path = self._path(key)
        _check_range(start, end, chunk_size)
        return self._read(key, path, start, end, chunk_size)

    async def _read(
        self, key: str, path: Path, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFoundError(key) from None
        except OSError as error:  # ELOOP from O_NOFOLLOW: never follow a planted symlink
            raise ObjectNotFoundError(key) from error
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ObjectNotFoundError(key)
            position = start
            while end is None or position < end:
                want = chunk_size if end is None else min(chunk_size, end - position)
                pieces = []
                got = 0
                while got < want:
                    piece = os.pread(fd, min(want - got, DIRECT_IO_LIMIT), position + got)
                    if not piece:
                        break
                    pieces.append(piece)
                    got += len(piece)
                if not got:
                    break
                position += got
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                if got < want:
                    break
        finally:
            os.close(fd)

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        return await _read_all(self, key, start, length)

    async def size(self, key: str) -> int:
        path = self._path(key)
        try:
            info = os.lstat(path)  # like read(): a symlink is not an object
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(key) from None
        if not stat.S_ISREG(info.st_mode):
            raise ObjectNotFoundError(key)
        return info.st_size

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except ObjectNotFoundError:
            return False
        return True

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a folder of longer keys ("key/…"), not an object
        await asyncio.to_thread(_fsync_dir, path.parent)

    def _list_prefix(self, prefix_dir: Path) -> list[str]:
        found = []
        for dirpath, _dirnames, filenames in os.walk(prefix_dir):
            for name in filenames:
                key = os.path.relpath(os.path.join(dirpath, name), prefix_dir)
                with contextlib.suppress(ValueError):
                    found.append(validate_key(key))
        return sorted(found)

    async def keys(self) -> AsyncIterator[str]:
        prefixes = await asyncio.to_thread(
            lambda: sorted(entry.path for entry in os.scandir(self._objects) if entry.is_dir())
        )
        for prefix in prefixes:
            for key in await asyncio.to_thread(self._list_prefix, Path(prefix)):
                yield key

    async def purge_incomplete(self, older_than: float = 86_400.0) -> int:
        def purge() -> int:
            cutoff = time.time() - older_than
            removed = 0
            for entry in os.scandir(self._tmp):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
            return removed

        return await asyncio.to_thread(purge)

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# --------------------------------------------------------------------------------------------
# S3-compatible object stores


def _error_code(error: Exception) -> tuple[str, int]:
    response: dict[str, Any] = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _is_not_found(error: Exception) -> bool:
    code, status = _error_code(error)
    return status == 404 or code in {"404", "NoSuchKey", "NotFound"}


class _S3Writer(ObjectWriter):
    """Buffers one part (at most `part_size` bytes) and uploads it when more data arrives; an
    object of at most one part is a single PutObject on commit.

    The part is kept in a BytesIO handed to botocore as a file: aiohttp then sends it in 64 KiB
    reads. (Given bytes or a bytearray, aiohttp slices and joins the body with the headers,
    making two more full copies of every part.)
    """

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__(key)
        self._store = store
        self._part = io.BytesIO()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def _open(self) -> None:
        return None

    async def _write(self, data: memoryview) -> None:
        part_size = self._store.part_size
        while data:
            if self._part.tell() == part_size:
                await self._upload_part(self._take_part())
            take = min(part_size - self._part.tell(), len(data))
            self._part.write(data[:take])
            data = data[take:]

    def _take_part(self) -> io.BytesIO:
        part, self._part = self._part, io.BytesIO()
        part.seek(0)
        return part

    async def _upload_part(self, body: io.BytesIO) -> None:
        store = self._store
        client = await store._get_client()
        if self._upload_id is None:
            created = await client.create_multipart_upload(
                Bucket=store.bucket, Key=self.key, **store._checksum_arguments
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        if number > S3_MAX_PARTS:
            raise ValueError(f"object larger than {S3_MAX_PARTS} parts of {store.part_size} bytes")
        response = await client.upload_part(
            Bucket=store.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            **store._checksum_arguments,
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if store.checksum_algorithm:
            field = f"Checksum{store.checksum_algorithm.upper()}"
            if response.get(field):
                part[field] = response[field]
        self._parts.append(part)

    async def _commit(self) -> None:
        store = self._store
        try:
            if self._upload_id is None:
                client = await store._get_client()
                await client.put_object(
                    Bucket=store.bucket,
                    Key=self.key,
                    Body=self._take_part(),
                    **store._checksum_arguments,
                )
                return
            if self._part.tell():
                await self._upload_part(self._take_part())
            client = await store._get_client()
            await client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
            self._upload_id = None
        except BaseException:
            await self._abort()
            raise
        finally:
            self._part = io.BytesIO()

    async def _abort(self) -> None:
        self._part = io.BytesIO()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        # Shielded: a second cancellation must not leave the upload (and its parts) behind.
        task = asyncio.ensure_future(self._store._abort_upload(self.key, upload_id))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await task
            raise


class S3Store:
    """An S3-compatible bucket. Use `async with S3Store(...) as store` or call `aclose()`."""

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        part_size: int = 8 * MiB,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_pool_connections: int = 20,
        checksum_algorithm: str | None = DEFAULT_CHECKSUM_ALGORITHM,
    ) -> None:
        if part_size < S3_MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {S3_MIN_PART_SIZE} bytes (S3 minimum)")
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        self.part_size = part_size
        # None for an old S3 server that rejects x-amz-checksum-* headers.
        self.checksum_algorithm = checksum_algorithm
        self._checksum_arguments: dict[str, str] = (
            {"ChecksumAlgorithm": checksum_algorithm} if checksum_algorithm else {}
        )
        self._access_key = access_key
        self._secret_key = secret_key
        self._timeouts = (connect_timeout, read_timeout, max_pool_connections)
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"S3Store(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r})"

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                from aiobotocore.session import get_session
                from botocore.config import Config

                connect_timeout, read_timeout, pool = self._timeouts
                config = Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    max_pool_connections=pool,
                    request_checksum_calculation=(
                        "when_supported" if self.checksum_algorithm else "when_required"
                    ),
                )
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        region_name=self.region,
                        aws_access_key_id=self._access_key,
                        aws_secret_access_key=self._secret_key,
                        config=config,
                    )
                )
                self._stack = stack
        return self._client

    async def aclose(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist."""
        client = await self._get_client()
        try:
            await client.head_bucket(Bucket=self.bucket)
            return
        except Exception as error:
            if not (_is_not_found(error) or _error_code(error)[0] == "NoSuchBucket"):
                raise
        arguments: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await client.create_bucket(**arguments)
        except Exception as error:
            if _error_code(error)[0] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def open_write(self, key: str) -> ObjectWriter:
        return _S3Writer(self, key)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        return await _put_with(self, key, chunks)

    async def _abort_upload(self, key: str, upload_id: str) -> None:
        client = await self._get_client()
        try:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as error:
            if not (_is_not_found(error) or _error_code(error)[0] == "NoSuchUpload"):
                raise

    async def _head(self, key: str) -> dict[str, Any]:
        client = await self._get_client()
        try:
            return await client.head_object(Bucket=self.bucket, Key=key)  # type: ignore[no-any-return]
        except Exception as error:
            if _is_not_found(error):
                raise ObjectNotFoundError(key) from None
            raise

    def read(
        self, key: str, start: int = 0, end: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        validate_key(key)
        _check_range(start, end, chunk_size)
        return self._read(key, start, end, chunk_size)

    async def _read(
        self, key: str, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        if end == start:
            await self._head(key)  # an empty range of a missing object is still an error
            return
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        client = await self._get_client()
        try:
            response = await client.get_object(**arguments)
        except Exception as error:
            if _is_not_found(error):
                raise ObjectNotFoundError(key) from None
            if _error_code(error)[1] == 416:  # start at or past the end
                await self._head(key)
                return
            raise
        async with response["Body"] as body:
            if "Range" in arguments and response["ResponseMetadata"]["HTTPStatusCode"] != 206:
                raise OSError("the S3 server ignored the Range header")
            pieces: list[bytes] = []
            buffered = 0
            while True:
                piece = await body.read(chunk_size - buffered)
                if not piece:
                    break
                pieces.append(piece)
                buffered += len(piece)
                if buffered >= chunk_size:
                    yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                    pieces, buffered = [], 0
            if pieces:
                yield b"".join(pieces)

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        return await _read_all(self, key, start, length)

    async def size(self, key: str) -> int:
        validate_key(key)
        return int((await self._head(key))["ContentLength"])

    async def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            await self._head(key)
        except ObjectNotFoundError:
            return False
        return True

    async def delete(self, key: str) -> None:
        validate_key(key)
        client = await self._get_client()
        try:
            await client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            if not _is_not_found(error):
                raise

    async def keys(self) -> AsyncIterator[str]:
        client = await self._get_client()
        async for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", ()):
                with contextlib.suppress(ValueError):
                    yield validate_key(item["Key"])

    async def pending_uploads(self) -> list[tuple[str, str, datetime]]:
        """(key, upload id, initiated) of every multipart upload not completed or aborted."""
        client = await self._get_client()
        found = []
        paginator = client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket):
            for upload in page.get("Uploads", ()):
                found.append((upload["Key"], upload["UploadId"], upload["Initiated"]))
        return found

    async def purge_incomplete(self, older_than: float = 86_400.0) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        removed = 0
        for key, upload_id, initiated in await self.pending_uploads():
            if initiated < cutoff:
                await self._abort_upload(key, upload_id)
                removed += 1
        return removed

"""Expanding an uploaded ZIP safely (docs/security.md item 16).

`iter_zip` checks the whole archive from its central directory before anything is extracted:
number of entries, total and per-entry uncompressed size, compression ratio, unsafe paths
(absolute, `..`, drive letters), symbolic links, encryption and compression methods. If one entry
fails, the whole archive is refused with an `ArchiveError` whose message is plain language for the
person who uploaded it.

Every entry's bytes are counted again while they are read: a header that lies about a size, or a
total that would pass a limit, raises `ArchiveError` mid-stream. Decompression is Python's
`zipfile`; only stored and deflated entries are accepted, because `zipfile` inflates those in
bounded steps (its bzip2 and LZMA paths decompress a whole read at once, and Deflate64 is not
supported at all).

The file name inside the ZIP is never used to store anything: entries are for sniffing and
storing under random keys. Nested ZIPs are returned as ordinary entries; the caller sniffs each
entry (`core.documents.content.sniff`) and decides. Directories and operating-system clutter
(`__MACOSX/`, `._*`, `.DS_Store`, `Thumbs.db`, `desktop.ini`) are skipped.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from core.documents.content import clean_display_text, display_name

__all__ = ["ArchiveError", "Entry", "Limits", "iter_zip"]

GIB = 1024**3
MIB = 1024**2
READ_CHUNK = 1 * MIB
# A central-directory record is 46 bytes plus name, extra field and comment: a generous 1 KiB per
# allowed entry. Checked before `zipfile` reads the directory, since it builds an object per record.
CENTRAL_DIRECTORY_BYTES_PER_ENTRY = 1024
ACCEPTED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
JUNK_FOLDERS = {"__macosx"}
JUNK_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
DRIVE = re.compile(r"^[A-Za-z]:")
SEPARATORS = re.compile(r"[/\\]")
# ZIP general-purpose flag bits: 0 = encrypted, 6 = strong encryption.
ENCRYPTION_FLAGS = 0x1 | 0x40


class ArchiveError(ValueError):
    """The archive is refused, or an entry failed while being read. `str(error)` is a plain
    sentence for the person who uploaded it."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.member = member  # the sanitised entry path it is about, if any


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one archive. Sizes are uncompressed bytes. `max_ratio` (uncompressed ÷
    compressed) applies to entries, and to the archive as a whole, larger than
    `ratio_floor_bytes`: a small blank image may legitimately compress 1000:1."""

    max_entries: int = 5000
    max_total_bytes: int = 4 * GIB
    max_entry_bytes: int = 1 * GIB
    max_ratio: int = 200
    ratio_floor_bytes: int = 1 * MIB


@dataclass(frozen=True)
class Entry:
    """One file in the archive. `name` and `path` are sanitised for display only."""

    name: str  # display name of the file, e.g. "IM000001"
    path: str  # display path inside the archive, e.g. "DICOM/ST000000/IM000001"
    size: int  # declared uncompressed size; enforced while reading
    _archive: zipfile.ZipFile = field(repr=False, compare=False)
    _info: zipfile.ZipInfo = field(repr=False, compare=False)
    _budget: _Budget = field(repr=False, compare=False)

    def open(self) -> BinaryIO:
        """Stream the decompressed bytes. Raises `ArchiveError` if the data is damaged, longer or
        shorter than declared, or the archive's total limit is passed. Usable as long as the file
        object given to `iter_zip` is open. Each read counts against the archive's total, so
        opening an entry twice counts it twice."""
        try:
            inner = self._archive.open(self._info)
        except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError, EOFError) as exc:
            raise _damaged(self.path) from exc
        return io.BufferedReader(_CountingReader(inner, self, self._budget), READ_CHUNK)


def iter_zip(fileobj: BinaryIO, limits: Limits | None = None) -> Iterator[Entry]:
    """Check the ZIP in `fileobj` (binary, seekable, positioned anywhere) against `limits`, then
    yield its files. Raises `ArchiveError` before yielding anything if the archive is refused."""
    limits = limits or Limits()
    archive = _open_archive(fileobj, limits)
    entries = _check(archive, limits)
    budget = _Budget(limits.max_total_bytes)
    for info, path in entries:
        yield Entry(
            name=display_name(path.rsplit("/", 1)[-1]),
            path=path,
            size=info.file_size,
            _archive=archive,
            _info=info,
            _budget=budget,
        )


def _open_archive(fileobj: BinaryIO, limits: Limits) -> zipfile.ZipFile:
    # Read the end-of-central-directory record first, with the same function zipfile uses, so a
    # directory of millions of records is refused before zipfile builds an object for each.
    try:
        end = zipfile._EndRecData(fileobj)  # type: ignore[attr-defined]
    except (OSError, struct.error) as exc:
        raise ArchiveError(DAMAGED) from exc
    if not end:
        raise ArchiveError(DAMAGED)
    if end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_entries:  # type: ignore[attr-defined]
        raise ArchiveError(_too_many(limits))
    max_directory = limits.max_entries * CENTRAL_DIRECTORY_BYTES_PER_ENTRY + 64 * 1024
    if end[zipfile._ECD_SIZE] > max_directory:  # type: ignore[attr-defined]
        raise ArchiveError(DIRECTORY_TOO_BIG)
    try:
        return zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ArchiveError(DAMAGED) from exc
    except NotImplementedError as exc:  # e.g. a ZIP version zipfile cannot read
        raise ArchiveError(UNSUPPORTED) from exc


def _check(archive: zipfile.ZipFile, limits: Limits) -> list[tuple[zipfile.ZipInfo, str]]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(_too_many(limits))
    kept: list[tuple[zipfile.ZipInfo, str]] = []
    total = compressed = 0
    for info in infos:
        path = _safe_path(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveError(
                f"“{path}” in this ZIP is a shortcut (a symbolic link), which cannot be uploaded. "
                "Please ZIP the files themselves.",
                path,
            )
        if info.flag_bits & ENCRYPTION_FLAGS:
            raise ArchiveError(
                "This ZIP is protected by a password. Please make a new ZIP without a password.",
                path,
            )
        if info.is_dir() or stat.S_ISDIR(mode):
            continue
        total += info.file_size
        compressed += info.compress_size
        if info.file_size > limits.max_entry_bytes:
            raise ArchiveError(
                f"“{path}” in this ZIP is larger than {_size(limits.max_entry_bytes)} when "
                "unpacked. Please upload it separately or split it.",
                path,
            )
        if _ratio_too_high(info.file_size, info.compress_size, limits):
            raise ArchiveError(_bomb(limits), path)
        if info.compress_type not in ACCEPTED_METHODS:
            raise ArchiveError(UNSUPPORTED, path)
        if not is_junk(path):
            kept.append((info, path))
    if total > limits.max_total_bytes:
        raise ArchiveError(
            f"Unpacked, this ZIP would be larger than {_size(limits.max_total_bytes)}. "
            "Please split it into smaller ZIPs."
        )
    if _ratio_too_high(total, compressed, limits):
        raise ArchiveError(_bomb(limits))
    return kept


def _safe_path(raw: str) -> str:
    """The member path cleaned for display; `ArchiveError` if it points outside the archive."""
    parts = SEPARATORS.split(raw)
    unsafe = (
        raw.startswith(("/", "\\"))
        or DRIVE.match(raw) is not None
        or any(".." in part and not part.strip(" .") for part in parts)
    )
    cleaned = [clean_display_text(part) for part in parts]
    path = "/".join(part for part in cleaned if part and part != ".")[:1000] or "document"
    if unsafe:
        raise ArchiveError(
            f"This ZIP contains a file stored with an unsafe location (“{path[:120]}”). "
            "Please ZIP the files again from their folder.",
            path,
        )
    return path


def is_junk(path: str) -> bool:
    """A file systems leave in folders and ZIPs (Finder's, Explorer's): never a record. The
    upload forms leave these out too (core/documents/upload_stream.py, static/upload.js)."""
    parts = path.lower().replace("\\", "/").split("/")
    return (
        any(part in JUNK_FOLDERS for part in parts[:-1])
        or parts[-1] in JUNK_FILES
        or parts[-1].startswith("._")
    )


def _ratio_too_high(size: int, compressed: int, limits: Limits) -> bool:
    return size > limits.ratio_floor_bytes and size > limits.max_ratio * max(compressed, 1)


class _Budget:
    """Uncompressed bytes actually read from one archive, across all its entries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            raise ArchiveError(
                f"Unpacked, this ZIP is larger than {_size(self.limit)}. "
                "Please split it into smaller ZIPs."
            )


class _CountingReader(io.RawIOBase):
    """Reads an entry through zipfile in bounded steps, counting every byte against the entry's
    declared size and the archive's budget."""

    def __init__(self, inner: zipfile.ZipExtFile, entry: Entry, budget: _Budget) -> None:
        self._inner = inner
        self._entry = entry
        self._budget = budget
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        want = min(len(view), READ_CHUNK)
        if want == 0:
            return 0
        try:
            data = self._inner.read(want)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise _damaged(self._entry.path) from exc
        if not data:
            if self._count != self._entry.size:
                raise _damaged(self._entry.path)
            return 0
        self._count += len(data)
        if self._count > self._entry.size:
            raise _damaged(self._entry.path)
        self._budget.spend(len(data))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


def _damaged(path: str) -> ArchiveError:
    return ArchiveError(
        f"“{path[:120]}” in this ZIP is damaged and could not be unpacked. "
        "Please make the ZIP again.",
        path,
    )


def _too_many(limits: Limits) -> str:
    return (
        f"This ZIP holds more than {limits.max_entries:,} files. Please split it into smaller ZIPs."
    )


def _bomb(limits: Limits) -> str:
    return (
        f"This ZIP cannot be unpacked safely: its contents would grow more than "
        f"{limits.max_ratio} times. Please make a normal ZIP of the files."
    )


def _size(count: int) -> str:
    for unit, factor in (("GB", GIB), ("MB", MIB), ("KB", 1024)):
        if count >= factor:
            return f"{count / factor:,.3g} {unit}"
    return f"{count} bytes"


DIRECTORY_TOO_BIG = (
    "This ZIP cannot be unpacked safely: its list of files is too large. "
    "Please split it into smaller ZIPs."
)
DAMAGED = "This ZIP file is damaged or is not a ZIP file. Please make the ZIP again."
UNSUPPORTED = (
    "This ZIP uses a kind of compression we cannot unpack. Please make the ZIP again with your "
    "computer's standard “Compress” or “Send to ZIP” command."
)

"""Streaming authenticated encryption of stored files (docs/security.md items 18-21).

The design follows Google Tink's AES-GCM streaming AEAD: a file is cut into segments that are
sealed one by one, so files of any size are sealed and opened in constant memory, and a reader
can decrypt any segment on its own. Each file has its own random 256-bit data key (wrapped by a
master key elsewhere, see ``core.documents.keyring``); the key is used for nothing else.

Format, version 1
=================

All integers are unsigned big-endian. ``‖`` is concatenation.

A sealed object is ``header ‖ segment_0 ‖ segment_1 ‖ … ‖ segment_(n-1)``.

Header, 33 bytes::

    offset  size  field
    0       4     magic, the ASCII bytes "CSL1" (43 53 4c 31)
    4       1     version, 0x01
    5       1     algorithm, 0x01 = AES-256-GCM with a 16-byte tag
    6       4     segment_size s: plaintext bytes per segment, uint32; 16 <= s <= 2**23
    10      16    file_id: the file's identity (random, chosen by the application)
    26      7     nonce_prefix: random, fresh for every sealing

The default segment size is 2**20 (1 MiB); 2**23 (8 MiB, ``MAX_SEGMENT_SIZE``) is the largest
a writer uses or a reader accepts: it bounds what a forged header can make a reader buffer.
A data key seals one plaintext; should one ever seal several, the random nonce prefix keeps the
nonces apart (a collision needs the same 56 random bits twice).

Segments. Let P be the plaintext length. The plaintext is cut into n = max(1, ceil(P / s))
pieces: piece i is plaintext bytes [i*s, min((i+1)*s, P)). Every piece but the last has exactly
s bytes; the last has 1..s bytes, or 0 bytes when P = 0 (an empty file is one empty segment).
When P is a positive multiple of s the last piece is full: no empty segment follows it.
n must not exceed 2**32. Segment i is::

    nonce_i     = nonce_prefix (7) ‖ uint32(i) (4) ‖ last_i (1)     -> 12 bytes
    last_i      = 0x01 if i == n - 1 else 0x00
    segment_i   = AES-256-GCM-Encrypt(key=data_key, nonce=nonce_i,  (NIST SP 800-38D)
                                      plaintext=piece_i, associated_data=header (all 33 bytes))
                = ciphertext_i (len(piece_i) bytes) ‖ tag_i (16 bytes)

So the sealed size is 33 + P + 16*n, and sealed segment i starts at 33 + i*(s + 16).

Reading. Check magic, version, algorithm, that 16 <= s <= 2**23, and that file_id is the
expected one. Then take segments of s + 16 bytes while more bytes follow them, opening each with
last = 0x00; what remains at the end of the stream (16..s + 16 bytes) is the final segment,
opened with last = 0x01. Anything else is an error: fewer than 16 bytes left, a tag that fails,
or an empty final segment after other segments (the encoding is canonical: one sealed form per
plaintext length). A reader must never release plaintext of a segment whose tag did not verify.

What this detects: because the header is the associated data of every segment and the index
and last flag are in every nonce, changing any byte, truncating (at a segment boundary or not),
reordering, dropping, duplicating or appending segments, and splicing in a segment from another
file or another sealing of the same file (other file_id or nonce_prefix) all fail
authentication, as does a wrong data key.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable
from typing import NamedTuple, TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ALGORITHM_AES256_GCM",
    "DEFAULT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "VERSION",
    "Header",
    "IntegrityError",
    "Opener",
    "SealedReader",
    "Sealer",
    "new_data_key",
    "new_file_id",
    "open_segment",
    "parse_header",
    "sealed_size",
    "segment_count",
    "segment_span",
]

MAGIC = b"CSL1"
VERSION = 1
ALGORITHM_AES256_GCM = 1
KEY_SIZE = 32
FILE_ID_SIZE = 16
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
DEFAULT_SEGMENT_SIZE = 1024 * 1024
MIN_SEGMENT_SIZE = 16
# Bounds what a reader allocates for one segment before the first tag has been checked.
MAX_SEGMENT_SIZE = 8 * 1024 * 1024  # bounds what a forged header can make a reader buffer
MAX_SEGMENTS = 2**32

_HEADER = struct.Struct(">4sBBI16s7s")
HEADER_SIZE = _HEADER.size  # 33
_NONCE_TAIL = struct.Struct(">IB")

Buffer: TypeAlias = bytes | bytearray | memoryview


class IntegrityError(Exception):
    """A sealed object is not what was sealed: tampered, truncated, extended, or wrong key."""


class Header(NamedTuple):
    version: int
    algorithm: int
    segment_size: int
    file_id: bytes
    nonce_prefix: bytes


def new_data_key() -> bytes:
    """A fresh random 256-bit data key, for exactly one file."""
    return os.urandom(KEY_SIZE)


def new_file_id() -> bytes:
    return os.urandom(FILE_ID_SIZE)


def _check_bytes(name: str, value: Buffer, size: int) -> bytes:
    value = bytes(value)
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, not {len(value)}")
    return value


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(
            f"segment_size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes"
        )


def _byte_view(data: Buffer) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def parse_header(header: Buffer, file_id: Buffer | None = None) -> Header:
    """Parse and check a header; with ``file_id``, also check it belongs to that file.

    The header is only authenticated once a segment opens (it is their associated data), but
    a header that fails these checks is rejected before anything is allocated for it.
    """
    header = bytes(header)
    if len(header) != HEADER_SIZE:
        raise IntegrityError("sealed header is truncated")
    magic, version, algorithm, segment_size, found_id, prefix = _HEADER.unpack(header)
    if magic != MAGIC:
        raise IntegrityError("not a sealed object (bad magic)")
    if version != VERSION:
        raise IntegrityError(f"unsupported sealed format version {version}")
    if algorithm != ALGORITHM_AES256_GCM:
        raise IntegrityError(f"unsupported sealing algorithm {algorithm}")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise IntegrityError("sealed header has an invalid segment size")
    if file_id is not None and found_id != bytes(file_id):
        raise IntegrityError("sealed object belongs to another file")
    return Header(version, algorithm, segment_size, found_id, prefix)


def segment_count(plaintext_size: int, segment_size: int) -> int:
    """Number of segments for a plaintext: at least one, the last holds 0..segment_size."""
    if plaintext_size < 0:
        raise ValueError("plaintext_size must not be negative")
    return max(1, -(-plaintext_size // segment_size))


def sealed_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Size of the stored object for a plaintext of ``plaintext_size`` bytes."""
    return HEADER_SIZE + plaintext_size + TAG_SIZE * segment_count(plaintext_size, segment_size)


def segment_span(
    index: int, segment_size: int, *, plaintext_size: int | None = None
) -> tuple[int, int]:
    """(offset, length) of sealed segment ``index`` in the stored object.

    Without ``plaintext_size`` the length is that of a full segment (the final segment may be
    shorter: clip to the object's end). With it, the final segment's exact length is returned
    and an index past the end raises ``IndexError``.
    """
    if index < 0:
        raise IndexError("segment index must not be negative")
    full = segment_size + TAG_SIZE
    offset = HEADER_SIZE + index * full
    if plaintext_size is None:
        return offset, full
    count = segment_count(plaintext_size, segment_size)
    if index >= count:
        raise IndexError(f"segment {index} is past the end ({count} segments)")
    if index == count - 1:
        return offset, plaintext_size - index * segment_size + TAG_SIZE
    return offset, full


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + _NONCE_TAIL.pack(index, 1 if last else 0)


def open_segment(
    data_key: Buffer,
    header: Buffer,
    index: int,
    sealed_segment: Buffer,
    is_last: bool,
    *,
    file_id: Buffer | None = None,
) -> bytes:
    """Open one sealed segment on its own (random access). Raises ``IntegrityError``."""
    parsed = parse_header(header, file_id)
    if not 0 <= index < MAX_SEGMENTS:
        raise IntegrityError("segment index out of range")
    segment = _byte_view(sealed_segment)
    if not TAG_SIZE <= segment.nbytes <= parsed.segment_size + TAG_SIZE:
        raise IntegrityError(f"segment {index} has an impossible length")
    if not is_last and segment.nbytes != parsed.segment_size + TAG_SIZE:
        raise IntegrityError(f"segment {index} is short but not the final segment")
    if is_last and index and segment.nbytes == TAG_SIZE:
        raise IntegrityError("an empty final segment is only valid as segment 0")
    aead = AESGCM(_check_bytes("data_key", data_key, KEY_SIZE))
    try:
        return aead.decrypt(_nonce(parsed.nonce_prefix, index, is_last), segment, bytes(header))
    except InvalidTag:
        raise IntegrityError(f"segment {index} failed authentication") from None


class Sealer:
    """Seal a stream of plaintext.

    ``update`` returns what is ready to be written, header first. The buffers it returns are
    reused: they are valid only until the next call to ``update`` or ``finalize``, so write (or
    copy) them before calling again. This keeps sealing free of allocation: the plaintext is
    copied at most once (only the part held back for the next call), the ciphertext is written
    straight into a reused output buffer.

    The last full segment is held back until more data arrives or ``finalize`` is called,
    because only then is it known whether it is the final one.
    """

    def __init__(
        self,
        data_key: Buffer,
        file_id: Buffer,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        *,
        nonce_prefix: Buffer | None = None,
    ) -> None:
        key = _check_bytes("data_key", data_key, KEY_SIZE)
        file_id = _check_bytes("file_id", file_id, FILE_ID_SIZE)
        _check_segment_size(segment_size)
        if nonce_prefix is None:
            # Tests pin the prefix to get a known answer; production never passes one.
            prefix = os.urandom(NONCE_PREFIX_SIZE)
        else:
            prefix = _check_bytes("nonce_prefix", nonce_prefix, NONCE_PREFIX_SIZE)
        self.segment_size = segment_size
        self.file_id = file_id
        self.header = _HEADER.pack(
            MAGIC, VERSION, ALGORITHM_AES256_GCM, segment_size, file_id, prefix
        )
        self.plaintext_size = 0
        self.sealed_bytes = 0
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._pending = memoryview(bytearray(segment_size))
        self._fill = 0
        self._out = bytearray()
        self._index = 0
        self._hash = hashlib.sha256()
        self._header_sent = False
        self._finished = False

    def _seal(self, plaintext: memoryview, out: memoryview, last: bool) -> None:
        if self._index >= MAX_SEGMENTS:
            raise ValueError("too many segments for one sealed object")
        nonce = _nonce(self._prefix, self._index, last)
        self._aead.encrypt_into(nonce, plaintext, self.header, out)
        self._index += 1

    def update(self, data: Buffer) -> list[memoryview | bytes]:
        if self._finished:
            raise RuntimeError("Sealer already finalized")
        view = _byte_view(data)
        size = view.nbytes
        output: list[memoryview | bytes] = []
        if not self._header_sent:
            output.append(self.header)
            self._header_sent = True
            self.sealed_bytes += HEADER_SIZE
        if not size:
            return output
        self._hash.update(view)
        self.plaintext_size += size
        seg = self.segment_size
        # Seal every segment that is certainly not the final one; keep 1..seg bytes back.
        count = (self._fill + size - 1) // seg
        pos = 0
        if count:
            sealed_len = seg + TAG_SIZE
            needed = count * sealed_len
            if len(self._out) < needed:
                # A new buffer, never a resize: the caller may still hold a view of the old one.
                self._out = bytearray(needed)
            out = memoryview(self._out)
            written = 0
            if self._fill:
                pos = seg - self._fill
                self._pending[self._fill :] = view[:pos]
                self._seal(self._pending, out[:sealed_len], last=False)
                self._fill = 0
                written = sealed_len
                count -= 1
            for _ in range(count):
                self._seal(view[pos : pos + seg], out[written : written + sealed_len], last=False)
                pos += seg
                written += sealed_len
            output.append(out[:written])
            self.sealed_bytes += written
        rest = size - pos
        self._pending[self._fill : self._fill + rest] = view[pos:]
        self._fill += rest
        return output

    def finalize(self) -> bytes:
        """Seal the final segment; returns the last bytes to write (with the header if unsent)."""
        if self._finished:
            raise RuntimeError("Sealer already finalized")
        sealed = bytearray(self._fill + TAG_SIZE)
        self._seal(self._pending[: self._fill], memoryview(sealed), last=True)
        self._finished = True
        self._pending.release()
        head = b"" if self._header_sent else self.header
        self._header_sent = True
        self.sealed_bytes += len(head) + len(sealed)
        self._out = bytearray()
        return head + sealed

    def sha256_hex(self) -> str:
        """SHA-256 of the whole plaintext, hex; only after ``finalize``."""
        if not self._finished:
            raise RuntimeError("call finalize() before sha256_hex()")
        return self._hash.hexdigest()


class Opener:
    """Open a sealed stream given in chunks of any size, header first.

    ``update`` returns plaintext segments as soon as each has authenticated (the possible final
    segment is held back); ``finalize`` returns the final segment. Any failure raises
    ``IntegrityError`` and leaves the opener unusable. Plaintext already returned is authentic
    but may be only a prefix: a caller that streams it onward must abort (not finish cleanly)
    when a later call raises.
    """

    def __init__(self, data_key: Buffer, file_id: Buffer, *, compute_sha256: bool = False) -> None:
        self._aead = AESGCM(_check_bytes("data_key", data_key, KEY_SIZE))
        self._file_id = _check_bytes("file_id", file_id, FILE_ID_SIZE)
        self.header: bytes | None = None
        self.segment_size: int | None = None
        self.plaintext_size = 0
        self._head = bytearray()
        self._prefix = b""
        self._pending = memoryview(bytearray())
        self._fill = 0
        self._sealed_len = 0
        self._index = 0
        self._hash = hashlib.sha256() if compute_sha256 else None
        self._state = "open"

    def _check_usable(self) -> None:
        if self._state == "failed":
            raise IntegrityError("sealed stream already failed authentication")
        if self._state == "done":
            raise RuntimeError("Opener already finalized")

    def _open(self, sealed: memoryview, last: bool) -> bytes:
        if self._index >= MAX_SEGMENTS:
            raise IntegrityError("sealed stream has too many segments")
        nonce = _nonce(self._prefix, self._index, last)
        try:
            plaintext = self._aead.decrypt(nonce, sealed, self.header)
        except InvalidTag:
            kind = "final segment" if last else "segment"
            raise IntegrityError(f"{kind} {self._index} failed authentication") from None
        self._index += 1
        self.plaintext_size += len(plaintext)
        if self._hash is not None:
            self._hash.update(plaintext)
        return plaintext

    def update(self, data: Buffer) -> list[bytes]:
        self._check_usable()
        try:
            return self._update(_byte_view(data))
        except IntegrityError:
            self._state = "failed"
            raise

    def _update(self, view: memoryview) -> list[bytes]:
        size = view.nbytes
        pos = 0
        if self.header is None:
            pos = min(HEADER_SIZE - len(self._head), size)
            self._head += view[:pos]
            if len(self._head) < HEADER_SIZE:
                return []
            header = bytes(self._head)
            parsed = parse_header(header, self._file_id)
            self.header = header
            self.segment_size = parsed.segment_size
            self._prefix = parsed.nonce_prefix
            self._sealed_len = parsed.segment_size + TAG_SIZE
            self._pending = memoryview(bytearray(self._sealed_len))
        output: list[bytes] = []
        sealed_len = self._sealed_len
        count = (self._fill + size - pos - 1) // sealed_len if size > pos else 0
        if count and self._fill:
            take = sealed_len - self._fill
            self._pending[self._fill :] = view[pos : pos + take]
            pos += take
            self._fill = 0
            output.append(self._open(self._pending, last=False))
            count -= 1
        for _ in range(count):
            output.append(self._open(view[pos : pos + sealed_len], last=False))
            pos += sealed_len
        rest = size - pos
        self._pending[self._fill : self._fill + rest] = view[pos:]
        self._fill += rest
        return output

    def finalize(self) -> bytes:
        """Open the final segment; raises ``IntegrityError`` if the stream is incomplete."""
        self._check_usable()
        try:
            if self.header is None:
                raise IntegrityError("sealed stream is truncated (incomplete header)")
            if self._fill < TAG_SIZE:
                raise IntegrityError("sealed stream is truncated (no final segment)")
            if self._fill == TAG_SIZE and self._index:
                raise IntegrityError("sealed stream has an empty final segment after others")
            plaintext = self._open(self._pending[: self._fill], last=True)
        except IntegrityError:
            self._state = "failed"
            raise
        self._state = "done"
        return plaintext

    def sha256_hex(self) -> str:
        """SHA-256 of the plaintext; needs ``compute_sha256=True`` and ``finalize``."""
        if self._hash is None:
            raise RuntimeError("Opener was created without compute_sha256=True")
        if self._state != "done":
            raise RuntimeError("call finalize() before sha256_hex()")
        return self._hash.hexdigest()


class SealedReader(io.RawIOBase):
    """A read-only, seekable file object over a sealed object, for zipfile, pydicom and kin.

    ``read_range(offset, length)`` returns ``length`` bytes of the stored object starting at
    ``offset`` (fewer only where the object ends). ``plaintext_size`` comes from the database
    row. On creation the header is checked and the final segment is opened with the last flag,
    which also proves the stored object has the expected length. Reads decrypt only the
    segments they touch; the most recent segment and the final one are cached. A segment that
    fails authentication raises ``IntegrityError`` and no byte of it is returned.
    """

    def __init__(
        self,
        read_range: Callable[[int, int], bytes],
        data_key: Buffer,
        file_id: Buffer,
        plaintext_size: int,
    ) -> None:
        super().__init__()
        if plaintext_size < 0:
            raise ValueError("plaintext_size must not be negative")
        self._read_range = read_range
        self._aead = AESGCM(_check_bytes("data_key", data_key, KEY_SIZE))
        self._size = plaintext_size
        self._pos = 0
        header = bytes(read_range(0, HEADER_SIZE))
        parsed = parse_header(header, _check_bytes("file_id", file_id, FILE_ID_SIZE))
        self._header = header
        self._prefix = parsed.nonce_prefix
        self.segment_size = parsed.segment_size
        self._count = segment_count(plaintext_size, parsed.segment_size)
        if self._count > MAX_SEGMENTS:
            raise IntegrityError("plaintext_size is too large for this sealed object")
        self._recent: tuple[int, bytes] | None = None
        self._final = self._load(self._count - 1)

    def _load(self, index: int) -> bytes:
        offset, length = segment_span(index, self.segment_size, plaintext_size=self._size)
        sealed = self._read_range(offset, length)
        if len(sealed) != length:
            raise IntegrityError(f"sealed object is truncated at segment {index}")
        last = index == self._count - 1
        try:
            return self._aead.decrypt(_nonce(self._prefix, index, last), sealed, self._header)
        except InvalidTag:
            kind = "final segment" if last else "segment"
            raise IntegrityError(f"{kind} {index} failed authentication") from None

    def _segment(self, index: int) -> bytes:
        if index == self._count - 1:
            return self._final
        if self._recent is not None and self._recent[0] == index:
            return self._recent[1]
        plaintext = self._load(index)
        self._recent = (index, plaintext)
        return plaintext

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._pos + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return position

    def readinto(self, buffer: Buffer) -> int:
        self._checkClosed()
        target = _byte_view(buffer)
        wanted = min(target.nbytes, max(0, self._size - self._pos))
        done = 0
        seg = self.segment_size
        while done < wanted:
            index, start = divmod(self._pos, seg)
            plaintext = self._segment(index)
            take = min(len(plaintext) - start, wanted - done)
            target[done : done + take] = memoryview(plaintext)[start : start + take]
            done += take
            self._pos += take
        return done

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        self._checkClosed()
        buffer = bytearray(min(size, max(0, self._size - self._pos)))
        self.readinto(buffer)
        return bytes(buffer)

    def readall(self) -> bytes:
        return self.read(max(0, self._size - self._pos))

    def close(self) -> None:
        self._recent = None
        self._final = b""
        super().close()

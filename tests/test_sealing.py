"""Sealed file format (core.documents.sealing) and master keyring (core.documents.keyring)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import stat
import struct
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.documents.keyring import Keyring, KeyringError, KeyWrapper
from core.documents.sealing import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    IntegrityError,
    Opener,
    SealedReader,
    Sealer,
    new_data_key,
    new_file_id,
    open_segment,
    parse_header,
    sealed_size,
    segment_count,
    segment_span,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sealing_kat.json").read_text())
KAT = VECTORS["sealing"]

# The first known answer, inline as well so that regenerating the JSON file cannot hide a
# format change: data key 00..1f, file id a0..af, nonce prefix c0..c6, 64-byte segments,
# 150 bytes of plaintext -> three segments (64, 64, 22).
KAT_SEALED_150 = (
    "43534c31010100000040a0a1a2a3a4a5a6a7a8a9aaabacadaeafc0c1c2c3c4c5c6f5572a3d8641cc405c1a3a01"
    "94f0557b5e7230a628315fc7080519fa19509d7b490d00d93a487bb2b71c03f888ecf48e1549af533cce12db90"
    "da3e34fe3fe3d349ab108b3ce4dadc428b90adb52c18567922d2eb7c873a8e75b4538194b7164c963e7d88c790"
    "b80324364d69f2f9c386e2d14936ee124284bcb4503e4dc7e8e13e79f308d7eba6aab4ec9493c936784880aa26"
    "d43a7f14bbd75aa344d583c8e4099a77b69574cbc46f2d3ee005bf74aac7578b4285498e3a8a4f40f2ba3dddb9"
    "2aeed3fda049"
)

KEY = new_data_key()
OTHER_KEY = new_data_key()
FILE_ID = new_file_id()
OTHER_FILE_ID = new_file_id()

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers ----------------------------------------------------------------------------------


def split(data: bytes, chunk_sizes: list[int]) -> list[bytes]:
    """Cut ``data`` into pieces, cycling through ``chunk_sizes`` (empty list: one piece)."""
    if not chunk_sizes:
        return [data]
    pieces, pos, i = [], 0, 0
    while pos < len(data):
        size = chunk_sizes[i % len(chunk_sizes)]
        pieces.append(data[pos : pos + size])
        pos += size
        i += 1
    return pieces


def seal(
    plaintext: bytes,
    segment_size: int,
    *,
    key: bytes = KEY,
    file_id: bytes = FILE_ID,
    chunks: list[int] | None = None,
    nonce_prefix: bytes | None = None,
) -> tuple[bytes, Sealer]:
    sealer = Sealer(key, file_id, segment_size, nonce_prefix=nonce_prefix)
    out = bytearray()
    for piece in split(plaintext, chunks or []):
        for buffer in sealer.update(piece):
            out += buffer  # written before the next call, as the contract requires
    out += sealer.finalize()
    return bytes(out), sealer


def open_stream(
    sealed: bytes, *, key: bytes = KEY, file_id: bytes = FILE_ID, chunks: list[int] | None = None
) -> tuple[bytes, Exception | None]:
    """(plaintext released, error): the release is checked to be authentic by the callers."""
    opener = Opener(key, file_id)
    released = bytearray()
    try:
        for piece in split(sealed, chunks or []):
            for plaintext in opener.update(piece):
                released += plaintext
        released += opener.finalize()
    except IntegrityError as error:
        return bytes(released), error
    return bytes(released), None


def assert_rejected(sealed: bytes, original: bytes, **kwargs: object) -> bytes:
    released, error = open_stream(sealed, **kwargs)  # type: ignore[arg-type]
    assert isinstance(error, IntegrityError)
    # Whatever came out before the failure is an authentic prefix, never forged plaintext.
    assert original.startswith(released)
    return released


def segments_of(sealed: bytes, segment_size: int, plaintext_size: int) -> list[bytes]:
    count = segment_count(plaintext_size, segment_size)
    spans = [segment_span(i, segment_size, plaintext_size=plaintext_size) for i in range(count)]
    return [sealed[offset : offset + length] for offset, length in spans]


segment_sizes = st.sampled_from([16, 17, 32, 64])
chunkings = st.lists(st.integers(1, 200), max_size=6)


@st.composite
def plaintexts(draw: st.DrawFn, segment_size: int) -> bytes:
    boundary = st.builds(
        lambda k, d: max(0, k * segment_size + d), st.integers(0, 5), st.sampled_from([-1, 0, 1])
    )
    size = draw(st.one_of(boundary, st.integers(0, 6 * segment_size)))
    return draw(st.binary(min_size=size, max_size=size))


@st.composite
def cases(draw: st.DrawFn, min_segments: int = 1) -> tuple[int, bytes]:
    segment_size = draw(segment_sizes)
    plaintext = draw(plaintexts(segment_size))
    if segment_count(len(plaintext), segment_size) < min_segments:
        extra = (min_segments - 1) * segment_size + 1 - len(plaintext)
        plaintext += draw(st.binary(min_size=extra, max_size=extra))
    return segment_size, plaintext


# --- the format is pinned -----------------------------------------------------------------------


def reference_seal(plaintext: bytes, segment_size: int) -> bytes:
    """An independent implementation written from the module docstring alone."""
    key, file_id, prefix = (
        bytes.fromhex(KAT[name]) for name in ("data_key", "file_id", "nonce_prefix")
    )
    header = b"CSL1" + bytes([1, 1]) + struct.pack(">I", segment_size) + file_id + prefix
    pieces = [plaintext[i : i + segment_size] for i in range(0, len(plaintext), segment_size)]
    pieces = pieces or [b""]
    aead = AESGCM(key)
    out = header
    for i, piece in enumerate(pieces):
        nonce = prefix + struct.pack(">I", i) + bytes([i == len(pieces) - 1])
        out += aead.encrypt(nonce, piece, header)
    return out


@pytest.mark.parametrize("vector", KAT["vectors"], ids=lambda v: v["name"])
def test_known_answer(vector: dict[str, str]) -> None:
    key, file_id, prefix = (
        bytes.fromhex(KAT[name]) for name in ("data_key", "file_id", "nonce_prefix")
    )
    plaintext, expected = bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["sealed"])
    for chunks in ([], [1], [7, 64, 3], [65]):
        sealed, sealer = seal(
            plaintext,
            KAT["segment_size"],
            key=key,
            file_id=file_id,
            chunks=chunks,
            nonce_prefix=prefix,
        )
        assert sealed == expected
        assert sealer.sha256_hex() == hashlib.sha256(plaintext).hexdigest()
    assert reference_seal(plaintext, KAT["segment_size"]) == expected
    assert open_stream(expected, key=key, file_id=file_id) == (plaintext, None)


def test_known_answer_inline() -> None:
    vector = KAT["vectors"][0]
    assert vector["sealed"] == KAT_SEALED_150
    assert (
        len(bytes.fromhex(KAT_SEALED_150))
        == HEADER_SIZE + 150 + 3 * TAG_SIZE
        == sealed_size(150, 64)
    )
    header = parse_header(bytes.fromhex(KAT_SEALED_150)[:HEADER_SIZE])
    assert (header.version, header.algorithm, header.segment_size) == (1, 1, 64)
    assert (
        header.file_id.hex() == KAT["file_id"] and header.nonce_prefix.hex() == KAT["nonce_prefix"]
    )


def test_key_wrapping_known_answer() -> None:
    vector = VECTORS["key_wrapping"]
    keyring = Keyring(
        {vector["master_key_id"]: bytes.fromhex(vector["master_key"])}, vector["master_key_id"]
    )
    data_key = keyring.unwrap(
        vector["master_key_id"],
        bytes.fromhex(vector["wrapped"]),
        file_id=bytes.fromhex(vector["file_id"]),
    )
    assert data_key.hex() == vector["data_key"]


def test_defaults_and_sizes() -> None:
    assert DEFAULT_SEGMENT_SIZE == 1024 * 1024
    assert len(new_data_key()) == 32 and len(new_file_id()) == 16
    assert new_data_key() != new_data_key()
    sealer = Sealer(KEY, FILE_ID)
    assert len(sealer.header) == HEADER_SIZE == 33
    assert sealer.header[:4] == b"CSL1" and parse_header(sealer.header).segment_size == 1 << 20
    assert Sealer(KEY, FILE_ID).header != sealer.header  # fresh nonce prefix every sealing
    assert sealed_size(0, 64) == 33 + 16
    assert sealed_size(64, 64) == 33 + 64 + 16
    assert sealed_size(65, 64) == 33 + 65 + 32
    assert segment_span(2, 64) == (33 + 2 * 80, 80)
    assert segment_span(1, 64, plaintext_size=100) == (33 + 80, 36 + 16)
    with pytest.raises(IndexError):
        segment_span(2, 64, plaintext_size=128)
    for bad in (
        dict(data_key=b"short"),
        dict(file_id=b"x"),
        dict(segment_size=8),
        dict(nonce_prefix=b"1"),
    ):
        arguments = {"data_key": KEY, "file_id": FILE_ID, **bad}
        with pytest.raises(ValueError):
            Sealer(**arguments)  # type: ignore[arg-type]


# --- round trips --------------------------------------------------------------------------------


@FAST
@given(case=cases(), write=chunkings, read=chunkings)
def test_round_trip(case: tuple[int, bytes], write: list[int], read: list[int]) -> None:
    segment_size, plaintext = case
    sealed, sealer = seal(plaintext, segment_size, chunks=write)
    assert len(sealed) == sealed_size(len(plaintext), segment_size) == sealer.sealed_bytes
    assert sealer.plaintext_size == len(plaintext)
    assert sealer.sha256_hex() == hashlib.sha256(plaintext).hexdigest()
    opener = Opener(KEY, FILE_ID, compute_sha256=True)
    released = bytearray()
    for piece in split(sealed, read):
        outputs = opener.update(piece)
        # Segments come out as soon as they are known not to be the final one.
        assert all(len(p) == segment_size for p in outputs)
        for plaintext_segment in outputs:
            released += plaintext_segment
    released += opener.finalize()
    assert released == plaintext
    assert opener.plaintext_size == len(plaintext)
    assert opener.sha256_hex() == hashlib.sha256(plaintext).hexdigest()


@FAST
@given(case=cases())
def test_open_segment_random_access(case: tuple[int, bytes]) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    header = sealed[:HEADER_SIZE]
    segments = segments_of(sealed, segment_size, len(plaintext))
    assert HEADER_SIZE + sum(map(len, segments)) == len(sealed)
    for i, segment in enumerate(segments):
        is_last = i == len(segments) - 1
        expected = plaintext[i * segment_size : (i + 1) * segment_size]
        assert open_segment(KEY, header, i, segment, is_last, file_id=FILE_ID) == expected
        with pytest.raises(IntegrityError):
            open_segment(KEY, header, i, segment, not is_last)
        with pytest.raises(IntegrityError):
            open_segment(OTHER_KEY, header, i, segment, is_last)


def test_inputs_of_any_buffer_type() -> None:
    plaintext = os.urandom(300)
    sealer = Sealer(KEY, FILE_ID, 64)
    out = bytearray()
    for piece in (bytearray(plaintext[:100]), memoryview(plaintext)[100:250], plaintext[250:]):
        for buffer in sealer.update(piece):
            out += buffer
    out += sealer.finalize()
    opener = Opener(KEY, FILE_ID)
    released = b"".join(opener.update(memoryview(bytes(out)))) + opener.finalize()
    assert released == plaintext


def test_finalize_without_update_and_misuse() -> None:
    sealer = Sealer(KEY, FILE_ID, 64)
    with pytest.raises(RuntimeError):
        sealer.sha256_hex()
    sealed = sealer.finalize()
    assert len(sealed) == HEADER_SIZE + TAG_SIZE
    assert sealer.sha256_hex() == hashlib.sha256(b"").hexdigest()
    with pytest.raises(RuntimeError):
        sealer.update(b"more")
    with pytest.raises(RuntimeError):
        sealer.finalize()
    assert open_stream(sealed) == (b"", None)


# --- tampering is detected ---------------------------------------------------------------------


@FAST
@given(case=cases(), data=st.data())
def test_truncation_anywhere(case: tuple[int, bytes], data: st.DataObject) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    cut = data.draw(st.integers(0, len(sealed) - 1))
    assert_rejected(sealed[:cut], plaintext, chunks=data.draw(chunkings))
    # Every cut on a segment boundary, where only the last flag can tell.
    for boundary in range(HEADER_SIZE, len(sealed), segment_size + TAG_SIZE):
        assert_rejected(sealed[:boundary], plaintext)


@FAST
@given(case=cases(min_segments=2))
def test_dropping_the_final_segment(case: tuple[int, bytes]) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    segments = segments_of(sealed, segment_size, len(plaintext))
    released = assert_rejected(sealed[:HEADER_SIZE] + b"".join(segments[:-1]), plaintext)
    assert len(released) <= (len(segments) - 2) * segment_size
    # Dropping a middle segment fails too.
    assert_rejected(sealed[:HEADER_SIZE] + b"".join(segments[1:]), plaintext)


@FAST
@given(case=cases(min_segments=2), data=st.data())
def test_reordering(case: tuple[int, bytes], data: st.DataObject) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    segments = segments_of(sealed, segment_size, len(plaintext))
    i = data.draw(st.integers(0, len(segments) - 2))
    j = data.draw(st.integers(i + 1, len(segments) - 1))
    segments[i], segments[j] = segments[j], segments[i]
    released = assert_rejected(sealed[:HEADER_SIZE] + b"".join(segments), plaintext)
    assert len(released) <= i * segment_size


@FAST
@given(case=cases(), extra=st.binary(min_size=1, max_size=100))
def test_appended_bytes(case: tuple[int, bytes], extra: bytes) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    assert_rejected(sealed + extra, plaintext)


@FAST
@given(case=cases())
def test_appended_segments(case: tuple[int, bytes]) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    segments = segments_of(sealed, segment_size, len(plaintext))
    assert_rejected(sealed + segments[0], plaintext)
    assert_rejected(sealed + segments[-1], plaintext)
    # A genuine segment sealed as the next one of another sealing with the same key.
    longer, _ = seal(plaintext + b"x" * (segment_size + 1), segment_size, file_id=FILE_ID)
    tail = segments_of(longer, segment_size, len(plaintext) + segment_size + 1)[-1]
    assert_rejected(sealed + tail, plaintext)


@FAST
@given(case=cases(), data=st.data())
def test_bit_flip_anywhere(case: tuple[int, bytes], data: st.DataObject) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    position = data.draw(st.integers(0, len(sealed) - 1))
    tampered = bytearray(sealed)
    tampered[position] ^= 1 << data.draw(st.integers(0, 7))
    released = assert_rejected(bytes(tampered), plaintext, chunks=data.draw(chunkings))
    if position >= HEADER_SIZE:
        damaged_segment = (position - HEADER_SIZE) // (segment_size + TAG_SIZE)
        assert len(released) <= damaged_segment * segment_size
    else:
        assert released == b""


@pytest.mark.parametrize("position", [0, 4, 5, 6, 9, 10, 25, 26, 32])
def test_header_fields(position: int) -> None:
    plaintext = os.urandom(200)
    sealed, _ = seal(plaintext, 64)
    tampered = bytearray(sealed)
    tampered[position] ^= 0x01
    assert_rejected(bytes(tampered), plaintext)
    with pytest.raises(IntegrityError):
        SealedReader(lambda o, n: bytes(tampered[o : o + n]), KEY, FILE_ID, len(plaintext))


@FAST
@given(case=cases())
def test_wrong_key_or_file(case: tuple[int, bytes]) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    assert assert_rejected(sealed, plaintext, key=OTHER_KEY) == b""
    assert assert_rejected(sealed, plaintext, file_id=OTHER_FILE_ID) == b""


@FAST
@given(case=cases(), data=st.data())
def test_splicing_between_files_with_one_key(case: tuple[int, bytes], data: st.DataObject) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    other_plaintext = os.urandom(len(plaintext))
    count = segment_count(len(plaintext), segment_size)
    i = data.draw(st.integers(0, count - 1))
    for other_file_id in (OTHER_FILE_ID, FILE_ID):  # another file, or a re-sealing of this one
        other, _ = seal(other_plaintext, segment_size, file_id=other_file_id)
        segments = segments_of(sealed, segment_size, len(plaintext))
        segments[i] = segments_of(other, segment_size, len(plaintext))[i]
        released = assert_rejected(sealed[:HEADER_SIZE] + b"".join(segments), plaintext)
        assert len(released) <= i * segment_size
        if other_file_id == FILE_ID:
            # The other sealing's header with this body fails as well.
            assert_rejected(other[:HEADER_SIZE] + sealed[HEADER_SIZE:], plaintext)


def test_one_sealed_form_per_plaintext() -> None:
    # 128 bytes in 64-byte segments end with a full final segment; the same bytes sealed with
    # an extra empty final segment (as a careless other implementation might) are refused.
    plaintext = os.urandom(128)
    key, prefix = KEY, os.urandom(7)
    header = Sealer(key, FILE_ID, 64, nonce_prefix=prefix).header
    aead = AESGCM(key)
    body = b"".join(
        aead.encrypt(prefix + struct.pack(">IB", i, i == 2), piece, header)
        for i, piece in enumerate([plaintext[:64], plaintext[64:], b""])
    )
    assert_rejected(header + body, plaintext)
    with pytest.raises(IntegrityError, match="empty final"):
        open_segment(key, header, 2, body[-16:], True)


def test_opener_stays_failed_and_checks_header() -> None:
    plaintext = os.urandom(100)
    sealed, _ = seal(plaintext, 16)
    opener = Opener(KEY, FILE_ID)
    with pytest.raises(IntegrityError, match="another file"):
        Opener(KEY, OTHER_FILE_ID).update(sealed)
    with pytest.raises(IntegrityError, match="magic"):
        opener.update(b"XXXX" + sealed[4:])
    with pytest.raises(IntegrityError):
        opener.update(sealed)
    with pytest.raises(IntegrityError):
        opener.finalize()
    for field, value in ((4, 2), (5, 2)):
        tampered = bytearray(sealed)
        tampered[field] = value
        with pytest.raises(IntegrityError, match="unsupported"):
            Opener(KEY, FILE_ID).update(bytes(tampered))
    huge = bytearray(sealed)
    huge[6:10] = struct.pack(">I", 2**31)
    with pytest.raises(IntegrityError, match="segment size"):
        Opener(KEY, FILE_ID).update(bytes(huge))
    with pytest.raises(IntegrityError, match="truncated"):
        Opener(KEY, FILE_ID).finalize()
    done = Opener(KEY, FILE_ID)
    done.update(sealed)
    done.finalize()
    with pytest.raises(RuntimeError):
        done.update(b"")


# --- SealedReader -------------------------------------------------------------------------------


def reader_for(sealed: bytes | bytearray, plaintext_size: int, **kwargs: object) -> SealedReader:
    calls: list[tuple[int, int]] = []

    def read_range(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return bytes(sealed[offset : offset + length])

    reader = SealedReader(read_range, kwargs.get("key", KEY), FILE_ID, plaintext_size)  # type: ignore[arg-type]
    reader.calls = calls  # type: ignore[attr-defined]
    return reader


operations = st.lists(
    st.tuples(
        st.sampled_from(["read", "seek_set", "seek_cur", "seek_end", "readinto", "readall"]),
        st.integers(-50, 400),
    ),
    max_size=12,
)


@FAST
@given(case=cases(), ops=operations)
def test_reader_matches_plaintext(case: tuple[int, bytes], ops: list[tuple[str, int]]) -> None:
    segment_size, plaintext = case
    sealed, _ = seal(plaintext, segment_size)
    reader = reader_for(sealed, len(plaintext))
    model = io.BytesIO(plaintext)
    assert reader.readable() and reader.seekable() and not reader.writable()
    for op, n in ops:
        if op == "read":
            assert reader.read(abs(n)) == model.read(abs(n))
        elif op == "readinto":
            ours, theirs = bytearray(abs(n)), bytearray(abs(n))
            assert reader.readinto(ours) == model.readinto(theirs)
            assert ours == theirs
        elif op == "readall":
            assert reader.read() == model.read()
        else:
            whence = {"seek_set": io.SEEK_SET, "seek_cur": io.SEEK_CUR, "seek_end": io.SEEK_END}[op]
            target = {io.SEEK_SET: 0, io.SEEK_CUR: model.tell(), io.SEEK_END: len(plaintext)}[
                whence
            ] + n
            if target < 0:
                with pytest.raises(ValueError):
                    reader.seek(n, whence)
                continue
            assert reader.seek(n, whence) == model.seek(n, whence)
        assert reader.tell() == model.tell()


def test_reader_decrypts_only_what_it_needs() -> None:
    plaintext = os.urandom(64 * 10 + 5)
    sealed, _ = seal(plaintext, 64)
    reader = reader_for(sealed, len(plaintext))
    # Construction: the header, then the final segment (checks the last flag and the length).
    assert reader.calls == [(0, HEADER_SIZE), segment_span(10, 64, plaintext_size=len(plaintext))]
    reader.seek(64 * 3 + 10)
    assert reader.read(20) == plaintext[64 * 3 + 10 : 64 * 3 + 30]
    assert reader.read(20) == plaintext[64 * 3 + 30 : 64 * 3 + 50]  # cached
    reader.seek(-3, io.SEEK_END)
    assert reader.read() == plaintext[-3:]  # the final segment stays cached
    assert len(reader.calls) == 3
    with io.BufferedReader(reader, buffer_size=100) as buffered:
        buffered.seek(0)
        assert buffered.read() == plaintext
    assert reader.closed
    with pytest.raises(ValueError):
        reader.read(1)


def test_reader_with_zipfile() -> None:
    members = {f"scan/{i}.txt": os.urandom(3000 + i * 977) for i in range(5)}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    raw = archive.getvalue()
    sealed, _ = seal(raw, 256)
    with zipfile.ZipFile(reader_for(sealed, len(raw))) as zf:
        assert zf.namelist() == list(members)
        for name, content in members.items():
            assert zf.read(name) == content


def test_reader_detects_tampering() -> None:
    plaintext = os.urandom(64 * 5 + 30)
    sealed, _ = seal(plaintext, 64)
    segments = segments_of(sealed, 64, len(plaintext))
    # Wrong size from the database, missing final segment, appended segment, wrong key/file.
    for bad_size in (len(plaintext) - 1, len(plaintext) + 1, 64 * 5, 0):
        with pytest.raises(IntegrityError):
            reader_for(sealed, bad_size)
    with pytest.raises(IntegrityError):
        reader_for(sealed[: -len(segments[-1])], len(plaintext))
    with pytest.raises(IntegrityError):
        reader_for(sealed[: HEADER_SIZE + 5 * 80], 64 * 5)  # full segment 4 lacks the last flag
    with pytest.raises(IntegrityError):
        reader_for(sealed, len(plaintext), key=OTHER_KEY)
    with pytest.raises(IntegrityError, match="another file"):
        SealedReader(lambda o, n: sealed[o : o + n], KEY, OTHER_FILE_ID, len(plaintext))
    # A damaged middle segment fails when read, and only there.
    tampered = bytearray(sealed)
    tampered[segment_span(2, 64)[0] + 7] ^= 0x80
    reader = reader_for(tampered, len(plaintext))
    assert reader.read(128) == plaintext[:128]
    buffer = bytearray(b"\0" * 64)
    with pytest.raises(IntegrityError, match="segment 2"):
        reader.readinto(buffer)
    assert buffer == bytearray(64)  # nothing of the forged segment was written
    reader.seek(64 * 3)
    assert reader.read() == plaintext[64 * 3 :]


def test_reader_empty_file() -> None:
    sealed, _ = seal(b"", 64)
    reader = reader_for(sealed, 0)
    assert reader.read() == b"" and reader.read(10) == b""
    assert reader.seek(0, io.SEEK_END) == 0


# --- keyring --------------------------------------------------------------------------------


def test_wrap_unwrap_round_trip_and_binding() -> None:
    assert re.fullmatch(r"k-\d{8}-[0-9a-f]{4}", Keyring.generate().current_id)
    master = os.urandom(32)
    keyring = Keyring({"k-20261122-ab12": master}, "k-20261122-ab12")
    assert isinstance(keyring, KeyWrapper)
    data_key = new_data_key()
    key_id, wrapped = keyring.wrap(data_key, file_id=FILE_ID)
    assert key_id == keyring.current_id and len(wrapped) == 60
    assert keyring.unwrap(key_id, wrapped, file_id=FILE_ID) == data_key
    assert keyring.wrap(data_key, file_id=FILE_ID)[1] != wrapped  # random nonce
    with pytest.raises(KeyringError, match="failed authentication"):
        keyring.unwrap(key_id, wrapped, file_id=OTHER_FILE_ID)
    with pytest.raises(KeyringError, match="unknown"):
        keyring.unwrap("k-19990101-0000", wrapped, file_id=FILE_ID)
    damaged = bytearray(wrapped)
    damaged[20] ^= 1
    with pytest.raises(KeyringError):
        keyring.unwrap(key_id, bytes(damaged), file_id=FILE_ID)
    with pytest.raises(KeyringError):
        keyring.unwrap(key_id, wrapped[:-1], file_id=FILE_ID)
    # Relabelled with another key id: fails even if that key existed and were the same key.
    twin = Keyring({key_id: master, "k-other": master}, key_id)
    assert twin.unwrap(key_id, wrapped, file_id=FILE_ID) == data_key
    with pytest.raises(KeyringError):
        twin.unwrap("k-other", wrapped, file_id=FILE_ID)
    assert base64.b64encode(master).decode() not in repr(keyring)
    with pytest.raises(ValueError):
        keyring.wrap(b"short", file_id=FILE_ID)


def test_rotate_keeps_old_keys() -> None:
    keyring = Keyring.generate()
    first = keyring.current_id
    old = keyring.wrap(b"k" * 32, file_id=FILE_ID)
    second = keyring.rotate()
    assert second != first and keyring.current_id == second
    assert keyring.ids == [first, second]
    assert keyring.unwrap(*old, file_id=FILE_ID) == b"k" * 32
    new = keyring.wrap(b"n" * 32, file_id=FILE_ID)
    assert new[0] == second and keyring.unwrap(*new, file_id=FILE_ID) == b"n" * 32


def test_keyring_file(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    keyring = Keyring.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["current"] == keyring.current_id and list(document["keys"]) == keyring.ids
    wrapped = keyring.wrap(b"d" * 32, file_id=FILE_ID)
    again = Keyring.load_or_create(path)
    assert again.ids == keyring.ids
    assert again.unwrap(*wrapped, file_id=FILE_ID) == b"d" * 32
    # Rotation is saved before the new key is used: a restart keeps it.
    new_id = again.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reloaded = Keyring.load_or_create(path)
    assert reloaded.current_id == new_id and reloaded.unwrap(*wrapped, file_id=FILE_ID) == b"d" * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]  # no temp files left


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_keyring_file_refused_if_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keyring.json"
    Keyring.load_or_create(path)
    path.chmod(mode)
    with pytest.raises(KeyringError, match=r"chmod 600"):
        Keyring.load_or_create(path)


def test_keyring_file_created_0600_despite_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        Keyring.load_or_create(tmp_path / "k.json")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600


def test_keyring_from_env_is_read_only(tmp_path: Path) -> None:
    source = Keyring.load_or_create(tmp_path / "keyring.json")
    source.rotate()
    value = (tmp_path / "keyring.json").read_text()
    keyring = Keyring.from_env(value)
    assert keyring.ids == source.ids and keyring.current_id == source.current_id
    wrapped = source.wrap(b"e" * 32, file_id=FILE_ID)
    assert keyring.unwrap(*wrapped, file_id=FILE_ID) == b"e" * 32
    with pytest.raises(KeyringError, match="secret store"):
        keyring.rotate()
    assert keyring.ids == source.ids
    with pytest.raises(KeyringError):
        keyring.save()
    secret = json.loads(value)["keys"][source.current_id]
    for bad in (
        "not json " + secret,
        '{"current": "a", "keys": {}}',
        '{"current": "x", "keys": {"a": "' + secret + '"}}',
        '{"current": "a", "keys": {"a": "c2hvcnQ="}}',
        '{"current": "a", "keys": {"a b": "' + secret + '"}}',
    ):
        with pytest.raises(KeyringError) as caught:
            Keyring.from_env(bad)
        assert secret not in str(caught.value)


def test_a_running_app_picks_up_a_key_rotated_by_another_process(tmp_path) -> None:
    path = tmp_path / "keyring.json"
    app_keys = Keyring.load_or_create(path)  # loaded once at start
    cli_keys = Keyring.load_or_create(path)  # `consilium keys rotate` in another process
    new_id = cli_keys.rotate()
    file_id = os.urandom(16)
    data_key = os.urandom(32)
    key_id, wrapped = cli_keys.wrap(data_key, file_id=file_id)
    assert key_id == new_id
    assert app_keys.unwrap(key_id, wrapped, file_id=file_id) == data_key
    assert app_keys.wrap(data_key, file_id=file_id)[0] == new_id

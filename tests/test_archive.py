"""Expanding uploaded ZIPs: limits checked before extraction, counted again while reading, unsafe
entries refused (docs/security.md item 16)."""

from __future__ import annotations

import io
import random
import struct
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.documents.archive import (
    DAMAGED,
    DIRECTORY_TOO_BIG,
    UNSUPPORTED,
    ArchiveError,
    Entry,
    Limits,
    iter_zip,
)
from core.documents.content import sniff

CD_SIGNATURE = b"PK\x01\x02"
LOCAL_SIGNATURE = b"PK\x03\x04"
EOCD_SIGNATURE = b"PK\x05\x06"


def make_zip(
    members: list[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_central(data: bytes, index: int, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite a field of the index-th central-directory record."""
    position = -1
    for _ in range(index + 1):
        position = data.index(CD_SIGNATURE, position + 1)
    patched = bytearray(data)
    struct.pack_into(fmt, patched, position + offset, value)
    return bytes(patched)


def entries(data: bytes, limits: Limits | None = None) -> list[Entry]:
    return list(iter_zip(io.BytesIO(data), limits))


def read_all(entry: Entry, chunk: int = 1000) -> bytes:
    out = bytearray()
    with entry.open() as stream:
        while block := stream.read(chunk):
            out += block
    return bytes(out)


def refusal(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(ArchiveError) as caught:
        entries(data, limits)
    return str(caught.value)


PDF = b"%PDF-1.7\n" + b"report text " * 2000
JPEG = b"\xff\xd8\xff\xe0" + random.Random(1).randbytes(30_000)
DICOM = bytes(128) + b"DICM" + random.Random(2).randbytes(5_000)


# --- a good archive -----------------------------------------------------------------------------


def test_good_archive_lists_and_streams_its_files(tmp_path: Path) -> None:
    data = make_zip(
        [
            ("report.pdf", PDF),
            ("Bilder/Röntgen Thorax.jpg", JPEG),
            ("DICOM/ST000000/SE000000/IM000000", DICOM),
            ("DICOM/", b""),
            ("empty.txt", b""),
        ]
    )
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    with path.open("rb") as fileobj:
        found = list(iter_zip(fileobj))
        assert [(e.name, e.path, e.size) for e in found] == [
            ("report.pdf", "report.pdf", len(PDF)),
            ("Röntgen Thorax.jpg", "Bilder/Röntgen Thorax.jpg", len(JPEG)),
            ("IM000000", "DICOM/ST000000/SE000000/IM000000", len(DICOM)),
            ("empty.txt", "empty.txt", 0),
        ]
        assert [read_all(e) for e in found] == [PDF, JPEG, DICOM, b""]
        # The caller sniffs what came out, never trusting the names.
        assert [sniff(read_all(e)[:512]).kind for e in found[:3]] == ["pdf", "image", "dicom"]


def test_entries_can_be_read_in_any_order_and_with_read_all() -> None:
    found = entries(make_zip([("a.pdf", PDF), ("b.jpg", JPEG)], zipfile.ZIP_STORED))
    assert found[1].open().read() == JPEG
    assert found[0].open().read() == PDF


def test_nested_zip_is_an_ordinary_entry() -> None:
    inner = make_zip([("scan.jpg", JPEG)])
    (entry,) = entries(make_zip([("more.zip", inner)]))
    assert entry.name == "more.zip"
    assert sniff(read_all(entry)).kind == "zip"


def test_junk_and_directories_are_skipped() -> None:
    data = make_zip(
        [
            ("scans/", b""),
            ("scans/a.jpg", JPEG),
            ("__MACOSX/scans/._a.jpg", b"\x00\x05\x16\x07"),
            ("scans/.DS_Store", b"Bud1"),
            (".DS_Store", b"Bud1"),
            ("scans/Thumbs.db", b"\xd0\xcf\x11\xe0"),
            ("THUMBS.DB", b"\xd0\xcf\x11\xe0"),
            ("desktop.ini", b"[.ShellClassInfo]"),
            ("._report.pdf", b"\x00\x05\x16\x07"),
            ("report.pdf", PDF),
        ]
    )
    assert [e.path for e in entries(data)] == ["scans/a.jpg", "report.pdf"]


def test_names_are_sanitised_for_display() -> None:
    data = make_zip([("scans/evil\u202egpj.exe", JPEG), ("x\x1b[2J/./y\r\n.pdf", PDF)])
    assert [(e.name, e.path) for e in entries(data)] == [
        ("evilgpj.exe", "scans/evilgpj.exe"),
        ("y .pdf", "x[2J/y .pdf"),
    ]


def test_empty_archive_has_no_entries() -> None:
    assert entries(make_zip([])) == []


# --- limits, checked before anything is extracted -----------------------------------------------


def test_too_many_entries() -> None:
    data = make_zip([(f"{i}.jpg", JPEG[:100]) for i in range(5)])
    assert entries(data, Limits(max_entries=5))
    assert refusal(data, Limits(max_entries=4)) == (
        "This ZIP holds more than 4 files. Please split it into smaller ZIPs."
    )


def test_too_many_entries_when_the_end_record_lies_about_the_count() -> None:
    data = bytearray(make_zip([(f"{i}.jpg", JPEG[:100]) for i in range(5)]))
    end = data.rindex(EOCD_SIGNATURE)
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "1 entry", while the directory holds 5
    assert "more than 4 files" in refusal(bytes(data), Limits(max_entries=4))


def test_huge_central_directory_is_refused_before_it_is_parsed() -> None:
    data = make_zip([("a" * 60_000 + str(i), b"x") for i in range(3)])
    assert refusal(data, Limits(max_entries=3)) == DIRECTORY_TOO_BIG


def test_total_declared_size_too_big() -> None:
    data = make_zip([("a.pdf", PDF), ("b.jpg", JPEG)])
    assert entries(data, Limits(max_total_bytes=len(PDF) + len(JPEG)))
    message = refusal(data, Limits(max_total_bytes=40_000))
    assert message.startswith("Unpacked, this ZIP would be larger than 39.1 KB.")


def test_one_entry_too_big() -> None:
    data = make_zip([("a.pdf", PDF), ("b.jpg", JPEG)])
    message = refusal(data, Limits(max_entry_bytes=25_000))
    assert message.startswith("“b.jpg” in this ZIP is larger than 24.4 KB when unpacked.")


def test_zip_bomb_ratio() -> None:
    data = make_zip([("zeros.dcm", bytes(50 * 1024 * 1024))])
    assert len(data) < 100_000  # 50 MB in a tiny file
    message = refusal(data, Limits(max_ratio=200))
    assert "would grow more than 200 times" in message


def test_small_highly_compressible_files_are_fine() -> None:
    blank_slice = bytes(128) + b"DICM" + bytes(512 * 512 * 2)  # 512 KB, compresses 500:1
    (entry,) = entries(make_zip([("IM0001", blank_slice)]))
    assert read_all(entry, 65536) == blank_slice


def test_many_compressible_files_still_count_towards_the_ratio() -> None:
    data = make_zip([(f"IM{i}", bytes(900 * 1024)) for i in range(4)])
    assert "would grow" in refusal(data)


# --- unsafe entries -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.pdf",
        "scans/../../evil.pdf",
        "..\\evil.pdf",
        "scans\\..\\..\\evil.pdf",
        "/abs.pdf",
        "/etc/passwd",
        "\\abs.pdf",
        "\\\\server\\share\\x.pdf",
        "C:\\x",
        "c:/Windows/x.pdf",
        "C:relative.pdf",
        "scans/.. /x.pdf",
    ],
)
def test_unsafe_paths_are_refused(name: str) -> None:
    data = make_zip([("fine.pdf", PDF), (name, PDF)])
    message = refusal(data)
    assert message.startswith("This ZIP contains a file stored with an unsafe location")


def test_symlink_is_refused() -> None:
    link = zipfile.ZipInfo("scans/link.jpg")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    data = make_zip([("a.jpg", JPEG), (link, b"/etc/passwd")])
    assert refusal(data).startswith("“scans/link.jpg” in this ZIP is a shortcut (a symbolic link)")


@pytest.mark.parametrize("flags", [0x1, 0x41])
def test_encrypted_entry_is_refused(flags: int) -> None:
    data = patch_central(make_zip([("a.jpg", JPEG), ("b.pdf", PDF)]), 1, 8, "<H", flags)
    assert refusal(data) == (
        "This ZIP is protected by a password. Please make a new ZIP without a password."
    )


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_compression_methods_inflated_in_one_go_are_refused(method: int) -> None:
    assert refusal(make_zip([("a.pdf", PDF)], method)) == UNSUPPORTED


def test_deflate64_is_refused_with_a_readable_message() -> None:
    data = patch_central(make_zip([("a.pdf", PDF)]), 0, 10, "<H", 9)
    assert refusal(data) == UNSUPPORTED


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"PK\x03\x04 definitely not a zip",
        random.Random(3).randbytes(5000),
        make_zip([("a.pdf", PDF), ("b.jpg", JPEG)])[:-30],
    ],
)
def test_damaged_archive(data: bytes) -> None:
    assert refusal(data) == DAMAGED


def test_refused_archive_yields_nothing() -> None:
    data = make_zip([("a.pdf", PDF), ("../b.pdf", PDF)])
    iterator = iter_zip(io.BytesIO(data))
    with pytest.raises(ArchiveError):
        next(iterator)


# --- counted again while reading ----------------------------------------------------------------


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_header_declaring_less_than_the_real_data_is_caught_while_reading(
    compression: int,
) -> None:
    data = make_zip([("a.jpg", JPEG)], compression)
    lying = patch_central(data, 0, 24, "<I", 10_000)  # uncompressed size: 10,000 of 30,004
    (entry,) = entries(lying)
    assert entry.size == 10_000
    got = bytearray()
    with pytest.raises(ArchiveError, match=r"“a\.jpg” in this ZIP is damaged"), entry.open() as f:
        while block := f.read(4096):
            got += block
    assert len(got) <= 10_000  # never more than the header declared


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_header_declaring_more_than_the_real_data_is_caught_while_reading(
    compression: int,
) -> None:
    data = make_zip([("a.jpg", JPEG)], compression)
    (entry,) = entries(patch_central(data, 0, 24, "<I", len(JPEG) + 5000))
    with pytest.raises(ArchiveError, match="damaged"):
        read_all(entry)


def test_tampered_data_fails_its_checksum() -> None:
    data = bytearray(make_zip([("a.jpg", JPEG)], zipfile.ZIP_STORED))
    data[200] ^= 0xFF
    (entry,) = entries(bytes(data))
    with pytest.raises(ArchiveError, match="damaged"):
        read_all(entry)


def test_local_header_naming_another_file_is_caught() -> None:
    data = bytearray(make_zip([("a.jpg", JPEG)]))
    start = data.index(LOCAL_SIGNATURE)
    data[start + 30 : start + 35] = b"b.exe"
    (entry,) = entries(bytes(data))
    with pytest.raises(ArchiveError, match="damaged"):
        entry.open()


def test_total_is_counted_while_reading() -> None:
    (entry,) = entries(make_zip([("a.jpg", JPEG)]), Limits(max_total_bytes=50_000))
    assert read_all(entry) == JPEG
    with pytest.raises(ArchiveError, match=r"larger than 48\.8 KB"):
        read_all(entry)  # read twice: 60,008 bytes in all


VALID = make_zip(
    [("a.pdf", PDF[:3000]), ("dir/b.jpg", JPEG[:3000]), ("c.dcm", bytes(2000))],
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), max_size=6))
def test_corrupted_archives_only_ever_raise_archive_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for position, mask in flips:
        data[position] ^= mask
    try:
        for entry in iter_zip(io.BytesIO(bytes(data)), Limits(max_ratio=2000)):
            assert len(read_all(entry, 777)) <= entry.size
    except ArchiveError:
        pass

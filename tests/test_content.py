"""Content sniffing, the DICOM preamble guard and display file names (docs/security.md 15, 17)."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.documents.content import (
    HEAD_BYTES,
    MAX_NAME_CHARS,
    REFUSE_EMPTY,
    REFUSE_MARKUP,
    REFUSE_PROGRAM,
    REFUSE_UNKNOWN,
    content_disposition,
    dicom_preamble_is_executable,
    display_name,
    neutralise_dicom_preamble,
    sniff,
)
from tests.test_documents import new_case, upload

DICOM_BODY = b"DICM\x02\x00\x00\x00UL\x04\x00\xc8\x00\x00\x00" + bytes(range(256)) * 2


def dicom(preamble: bytes = b"") -> bytes:
    return preamble.ljust(128, b"\x00") + DICOM_BODY


# --- accepted kinds -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind", "media_type"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "pdf", "application/pdf"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image", "image/jpeg"),
        (b"\xff\xd8\xff\xe1\x12\x34Exif\x00\x00", "image", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image", "image/png"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image", "image/heic"),
        (b"\x00\x00\x00\x18ftypheix\x00\x00\x00\x00", "image", "image/heic"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heic", "image", "image/heif"),
        (b"\x00\x00\x00\x1cftypmsf1\x00\x00\x00\x00", "image", "image/heif"),
        (dicom(), "dicom", "application/dicom"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "zip", "application/zip"),
        (b"PK\x05\x06" + bytes(18), "zip", "application/zip"),
    ],
)
def test_accepted_magic(head: bytes, kind: str, media_type: str) -> None:
    result = sniff(head)
    assert (result.kind, result.media_type, result.refusal) == (kind, media_type, None)
    assert result.accepted


def test_pdf_must_start_at_byte_zero() -> None:
    assert not sniff(b"\n%PDF-1.4").accepted
    assert not sniff(b"<html>" + b" " * 20 + b"%PDF-1.4").accepted


def test_only_the_head_is_looked_at() -> None:
    assert HEAD_BYTES == 512
    assert sniff(bytes(HEAD_BYTES) + b"%PDF-").refusal == REFUSE_UNKNOWN


def test_dicom_needs_the_whole_marker() -> None:
    assert sniff(bytes(128) + b"DIC").refusal == REFUSE_UNKNOWN
    assert sniff(bytes(127) + b"DICM").refusal == REFUSE_UNKNOWN


# --- refused kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "refusal"),
    [
        (b"<!DOCTYPE html><html><body>", REFUSE_MARKUP),
        (b"\xef\xbb\xbf \r\n\t <html lang=en>", REFUSE_MARKUP),
        ("\ufeff\n  <!doctype html>".encode("utf-16-le"), REFUSE_MARKUP),
        ("<html>".encode("utf-16-be"), REFUSE_MARKUP),
        (b"   <HTML><script>alert(1)</script>", REFUSE_MARKUP),
        (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', REFUSE_MARKUP),
        (b'<?xml version="1.0"?><svg/>', REFUSE_MARKUP),
        (b"<?xml version='1.0' encoding='UTF-8'?><root/>", REFUSE_MARKUP),
        (b"\n<script>fetch('/')</script>", REFUSE_MARKUP),
        (b"#!/bin/sh\nrm -rf /\n", REFUSE_MARKUP),
        (b"\xef\xbb\xbf#!/usr/bin/env python3\n", REFUSE_MARKUP),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", REFUSE_PROGRAM),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(8), REFUSE_PROGRAM),
        (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01", REFUSE_PROGRAM),
        (b"\xfe\xed\xfa\xce\x00\x00\x00\x12", REFUSE_PROGRAM),
        (b"\xca\xfe\xba\xbe\x00\x00\x00\x02", REFUSE_PROGRAM),
        (b"", REFUSE_EMPTY),
        (b"Hello, this is a text file.\n", REFUSE_UNKNOWN),
        (b"GIF89a\x01\x00\x01\x00", REFUSE_UNKNOWN),
        (b"{\\rtf1\\ansi", REFUSE_UNKNOWN),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", REFUSE_UNKNOWN),  # old Word document
        (b"PK\x07\x08", REFUSE_UNKNOWN),  # spanned ZIP
        (b"\x00\x00\x00\x18ftypisom", REFUSE_UNKNOWN),  # MP4 video
    ],
)
def test_refused(head: bytes, refusal: str) -> None:
    result = sniff(head)
    assert (result.kind, result.media_type, result.refusal) == (None, None, refusal)
    assert not result.accepted


UNKNOWN_KIND = (
    "We could not recognise this file. Please upload PDF, JPEG, PNG, HEIC or WebP photos, "
    "DICOM images, or a ZIP of them."
)


@pytest.mark.parametrize(
    ("name", "data", "sentence"),
    [
        (
            "letter.html",
            b"<!DOCTYPE html><script>x</script>",
            "Web pages and scripts cannot be uploaded.",
        ),
        ("scan.pdf", b"MZ\x90\x00" + bytes(600), "Programs cannot be uploaded."),
        ("report.pdf", b"\x00\x01 not a known kind " * 40, UNKNOWN_KIND),
    ],
    ids=["web-page", "program", "unknown"],
)
async def test_refused_uploads_say_why_in_plain_language(
    client, name: str, data: bytes, sentence: str
) -> None:
    """What the person sees: a 415 page with a sentence they can act on, never a traceback."""
    _, uid = await new_case(client, f"refused-{name}@example.com")
    response = await upload(client, uid, name, data)
    assert response.status_code == 415
    assert sentence in response.text and "Traceback" not in response.text


@given(st.binary(max_size=HEAD_BYTES + 64))
def test_sniff_never_raises(head: bytes) -> None:
    result = sniff(head)
    assert (result.kind is None) == (result.refusal is not None)
    assert (result.kind is None) == (result.media_type is None)


# --- DICOM preamble (CVE-2019-11687) -------------------------------------------------------------


@pytest.mark.parametrize(
    "preamble",
    [b"MZ\x90\x00" + b"\xaa" * 60, b"\x7fELF\x02\x01\x01", b"\xcf\xfa\xed\xfe", b"#!/bin/sh\n"],
)
def test_executable_dicom_preamble_is_zeroed(preamble: bytes) -> None:
    original = dicom(preamble)
    assert sniff(original).kind == "dicom"  # a polyglot is still an image: keep it, defuse it
    assert dicom_preamble_is_executable(original)
    head = bytearray(original)
    assert neutralise_dicom_preamble(head) is True
    assert head[:128] == bytes(128)
    assert head[128:] == original[128:]
    assert not dicom_preamble_is_executable(head)
    assert neutralise_dicom_preamble(head) is False


@pytest.mark.parametrize(
    "head",
    [
        dicom(),
        dicom(b"II*\x00"),  # a TIFF header: the "dual personality" use the standard allows
        b"MZ\x90\x00" + bytes(200),  # a program, but not DICOM: sniff refuses it instead
        b"MZ",
    ],
)
def test_other_preambles_are_left_alone(head: bytes) -> None:
    assert not dicom_preamble_is_executable(head)
    buffer = bytearray(head)
    assert neutralise_dicom_preamble(buffer) is False
    assert buffer == head


# --- display names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\system32\\cmd.exe", "cmd.exe"),
        ("C:\\Users\\ana\\Desktop\\MRI report.pdf", "MRI report.pdf"),
        ("/var/tmp/scan.jpg", "scan.jpg"),
        ("scans/2026/", "2026"),
        ("scan.jpg/..", "scan.jpg"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # right-to-left override
        ("a\u2066b\u2069c\u200fd.pdf", "abcd.pdf"),
        ("line\r\nbreak\x00\x1b[31m.pdf", "line break[31m.pdf"),
        ("  lots \t of    space  .pdf", "lots of space .pdf"),
        ("Cafe\u0301.pdf", "Café.pdf"),  # NFC
        ("trailing dots...", "trailing dots"),
        ("", "document"),
        ("   ", "document"),
        ("..", "document"),
        ("/", "document"),
        ("\\\\server\\share\\", "share"),
        ("\u202e\u200b\x07", "document"),
        ("\u200c\u200d", "document"),
        ("Arztbrief Müller.pdf", "Arztbrief Müller.pdf"),
        ("تقرير.pdf", "تقرير.pdf"),
    ],
)
def test_display_name(raw: str, shown: str) -> None:
    assert display_name(raw) == shown


def test_long_name_keeps_its_extension() -> None:
    name = display_name("x" * 500 + ".jpeg")
    assert len(name) == MAX_NAME_CHARS and name.endswith("x.jpeg")
    assert display_name("y" * 500) == "y" * MAX_NAME_CHARS
    assert len(display_name("a" * 300 + "." + "b" * 40)) == MAX_NAME_CHARS  # not an extension


@given(st.text(max_size=400))
def test_display_name_is_always_safe(raw: str) -> None:
    name = display_name(raw)
    assert name and len(name) <= MAX_NAME_CHARS
    assert "/" not in name and "\\" not in name
    assert not any(unicodedata.category(c) in ("Cc", "Cs") for c in name)
    assert not any(c in name for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert name == name.strip()


@given(st.text(max_size=200))
def test_content_disposition_is_always_a_safe_header(raw: str) -> None:
    value = content_disposition(raw)
    assert value.isascii() and "\r" not in value and "\n" not in value
    fallback = value.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback and "\\" not in fallback and "%" not in fallback
    encoded = value.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == display_name(raw)


def test_content_disposition_for_a_non_ascii_name() -> None:
    value = content_disposition("Befund Größe 5 cm.pdf")
    assert value == (
        'attachment; filename="Befund Groe 5 cm.pdf"; '
        "filename*=UTF-8''Befund%20Gr%C3%B6%C3%9Fe%205%20cm.pdf"
    )
    value = content_disposition("报告.pdf")
    assert value.startswith('attachment; filename="document.pdf"; ')
    assert value.endswith("filename*=UTF-8''%E6%8A%A5%E5%91%8A.pdf")


def test_content_disposition_cannot_break_out_of_the_header() -> None:
    value = content_disposition('evil".pdf\r\nSet-Cookie: a=b; x="\\')
    assert value.startswith('attachment; filename="evil_.pdf Set-Cookie_ a_b_ x_"; ')
    assert "\r" not in value and "\n" not in value

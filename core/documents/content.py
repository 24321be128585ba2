"""What an uploaded file really is, and how its name may be shown (docs/security.md 15, 17).

The kind of a file is decided by its first bytes only, never by its name or the type the browser
claims. The caller passes the first `HEAD_BYTES` bytes (fewer only when the file is shorter).

- Accepted: PDF, JPEG, PNG, WebP, HEIC/HEIF, DICOM Part 10 and ZIP.
- Refused with a message a person can act on: web pages, SVG, XML and scripts; programs (Windows,
  Linux and macOS executables); anything else.

PDF must start at byte 0. Some PDF readers tolerate up to 1024 bytes of junk before `%PDF-`; we do
not, because that junk is where HTML or a script would hide. Every scanner and "Save as PDF" puts
`%PDF-` first.

A DICOM file starts with a 128-byte preamble that readers ignore. CVE-2019-11687: the preamble can
hold a Windows (PE) or Linux (ELF) program header, making one file both a valid image and a
runnable program. `neutralise_dicom_preamble` zeroes such a preamble before the file is stored.

File names from the client are kept for display only (storage keys are random): `display_name`
cleans them, `content_disposition` builds the download header.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "HEAD_BYTES",
    "MAX_NAME_CHARS",
    "PREVIEW_MEDIA_TYPES",
    "Sniffed",
    "clean_display_text",
    "content_disposition",
    "dicom_preamble_is_executable",
    "display_name",
    "neutralise_dicom_preamble",
    "sniff",
]

HEAD_BYTES = 512  # how many leading bytes `sniff` needs

# Sniffed types a browser can show in a page: images by itself, PDF through the pdf.js we serve.
# Not HEIC/HEIF (only Safari decodes them), DICOM or ZIP: those are downloaded.
PREVIEW_MEDIA_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "image/webp"})

MAX_NAME_CHARS = 120
FALLBACK_NAME = "document"

REFUSE_MARKUP = "Web pages and scripts cannot be uploaded."
REFUSE_PROGRAM = "Programs cannot be uploaded."
REFUSE_EMPTY = "The file is empty."
REFUSE_UNKNOWN = (
    "We could not recognise this file. Please upload PDF, JPEG, PNG, HEIC or WebP photos, "
    "DICOM images, or a ZIP of them."
)


@dataclass(frozen=True)
class Sniffed:
    """The verdict on a file's first bytes: an accepted `kind` and `media_type`, or a `refusal`
    (plain language, for the person who uploaded it)."""

    kind: str | None = None  # "pdf" | "image" | "dicom" | "zip"; None when refused
    media_type: str | None = None
    refusal: str | None = None

    @property
    def accepted(self) -> bool:
        return self.kind is not None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEIF_BRANDS = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",  # generic HEIF still image (iPhones write "heic")
    b"msf1": "image/heif",  # generic HEIF image sequence
}
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
PREAMBLE_BYTES = 128

EXECUTABLE_MAGICS = (
    b"MZ",  # Windows / DOS (PE)
    b"\x7fELF",  # Linux and most Unix
    b"\xfe\xed\xfa\xce",  # Mach-O 32-bit, big endian
    b"\xfe\xed\xfa\xcf",  # Mach-O 64-bit, big endian
    b"\xce\xfa\xed\xfe",  # Mach-O 32-bit, little endian
    b"\xcf\xfa\xed\xfe",  # Mach-O 64-bit, little endian
    b"\xca\xfe\xba\xbe",  # Mach-O universal ("fat") binary, also Java class files
)
SCRIPT_MAGIC = b"#!"

BOMS = (
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe", "utf-16-le"),
)


def sniff(head: bytes) -> Sniffed:
    """Decide what a file is from its first `HEAD_BYTES` bytes. Never raises."""
    head = bytes(head[:HEAD_BYTES])
    if not head:
        return Sniffed(refusal=REFUSE_EMPTY)
    if head.startswith(b"%PDF-"):
        return Sniffed("pdf", "application/pdf")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "image/jpeg")
    if head.startswith(PNG_SIGNATURE):
        return Sniffed("image", "image/png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image", "image/webp")
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return Sniffed("image", HEIF_BRANDS[head[8:12]])
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a ZIP, or an empty ZIP
        return Sniffed("zip", "application/zip")
    # Checked before programs: a DICOM file whose preamble holds a program header is accepted as
    # DICOM, and the caller zeroes the preamble (see neutralise_dicom_preamble).
    if head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return Sniffed("dicom", "application/dicom")
    if head.startswith(EXECUTABLE_MAGICS):
        return Sniffed(refusal=REFUSE_PROGRAM)
    if _looks_like_markup_or_script(head):
        return Sniffed(refusal=REFUSE_MARKUP)
    return Sniffed(refusal=REFUSE_UNKNOWN)


def _looks_like_markup_or_script(head: bytes) -> bool:
    """HTML, SVG, XML (any text starting with `<`) or a `#!` script, after an optional byte order
    mark and white space, in UTF-8/16/32."""
    encoding = "latin-1"
    for bom, name in BOMS:
        if head.startswith(bom):
            head, encoding = head[len(bom) :], name
            break
    else:
        # UTF-16 without a byte order mark: "<" followed or preceded by a zero byte.
        if len(head) >= 2 and head[0] == 0 and head[1] != 0:
            encoding = "utf-16-be"
        elif len(head) >= 2 and head[0] != 0 and head[1] == 0:
            encoding = "utf-16-le"
    text = head.decode(encoding, errors="ignore").lstrip()
    return text.startswith(("<", "#!"))


def dicom_preamble_is_executable(head: bytes) -> bool:
    """True when `head` is a DICOM file (DICM at offset 128) whose preamble starts like a program
    (Windows PE `MZ`, ELF, Mach-O or a `#!` script): CVE-2019-11687."""
    if head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] != DICOM_MAGIC:
        return False
    return bytes(head[:PREAMBLE_BYTES]).startswith((*EXECUTABLE_MAGICS, SCRIPT_MAGIC))


def neutralise_dicom_preamble(head: bytearray) -> bool:
    """Zero the 128-byte preamble of a DICOM file in place when it holds a program header. Return
    True when `head` was changed. DICOM readers ignore the preamble, so the image is unchanged."""
    if not dicom_preamble_is_executable(head):
        return False
    head[:PREAMBLE_BYTES] = bytes(PREAMBLE_BYTES)
    return True


# --- file names ---------------------------------------------------------------------------------

KEEP_FORMAT_CHARS = {"\u200c", "\u200d"}  # zero-width (non-)joiner: needed in some scripts/emoji
PATH_SEPARATORS = re.compile(r"[/\\]")
MAX_EXTENSION_CHARS = 16


def clean_display_text(text: str) -> str:
    """Text from outside, made safe to show on one line: no control, bidi-override or other
    invisible formatting characters, NFC-normalised, white space collapsed to single spaces."""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or (category == "Cf" and char not in KEEP_FORMAT_CHARS):
            if category == "Cc" and char.isspace():
                kept.append(" ")  # tab or newline separates words
            continue
        kept.append(char)
    return " ".join(unicodedata.normalize("NFC", "".join(kept)).split())


def display_name(filename: str) -> str:
    """A client-supplied file name made safe for display: the last path component only (`/` and
    `\\` both count), no control or bidi characters, NFC, white space collapsed, at most
    `MAX_NAME_CHARS` characters keeping the extension; "document" when nothing is left."""
    cleaned = clean_display_text(filename or "")
    parts = [p for p in PATH_SEPARATORS.split(cleaned) if p.strip(" .")]
    name = parts[-1].strip().rstrip(". ") if parts else ""
    if not any(unicodedata.category(char)[0] not in "CZ" for char in name):
        return FALLBACK_NAME  # nothing visible left
    if len(name) > MAX_NAME_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and stem.strip() and 0 < len(extension) <= MAX_EXTENSION_CHARS:
            keep = MAX_NAME_CHARS - len(extension) - 1
            name = stem[:keep].rstrip(" .") + "." + extension
        else:
            name = name[:MAX_NAME_CHARS].rstrip(" .")
    return name or FALLBACK_NAME


ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()+,-]+")


def content_disposition(name: str, *, inline: bool = False) -> str:
    """An RFC 6266 `Content-Disposition` value that makes the browser download the file (never
    display it) under `name`: an ASCII `filename` for old clients and a UTF-8 `filename*`.
    `inline` is for previews: shown in the page, saved under `name` if the person saves it."""
    name = display_name(name)
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = " ".join(ASCII_UNSAFE.sub("_", ascii_name).split())
    stem, dot, extension = ascii_name.rpartition(".")
    if not ascii_name.strip("_ .") or (dot and not stem.strip("_ .")):
        ascii_name = FALLBACK_NAME + (("." + extension) if dot and extension.strip("_") else "")
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"

"""Records shown in the browser: our page around them, the bytes sandboxed and audited."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from core.audit.tables import AuditEvent
from core.documents.content import content_disposition
from core.documents.tables import Document
from core.security import CSP, SANDBOX_CSP
from tests.conftest import open_client
from tests.support import csrf_token, make_person, sign_in
from tests.test_documents import PDF as LARGE_PDF
from tests.test_documents import files_under, new_case, upload


def make_png(
    width: int = 40, height: int = 30, rgb: tuple[int, int, int] = (11, 100, 112)
) -> bytes:
    """A real, decodable PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_pdf(text: str = "Consilium preview", pages: int = 1, font_file: bytes = b"") -> bytes:
    """A real, minimal PDF: a line of text and a blue box on every page, correct xref. Text is
    set in Helvetica, which PDFs may name without embedding; with `font_file` (a TrueType font)
    every second page uses that font, embedded, as most producers do."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    helvetica, embedded = 3 + 2 * pages, 4 + 2 * pages
    fonts = f"/F1 {helvetica} 0 R" + (f" /F2 {embedded} 0 R" if font_file else "")
    for i in range(pages):
        font = "/F2" if font_file and i % 2 else "/F1"
        stream = (
            f"BT {font} 28 Tf 72 700 Td ({text}, page {i + 1}) Tj ET 0 0 1 rg 72 420 300 200 re f"
        ).encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << {fonts} >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    if font_file:
        objects.append(
            f"<< /Type /Font /Subtype /TrueType /BaseFont /Embedded /Encoding /WinAnsiEncoding "
            f"/FontDescriptor {embedded + 1} 0 R >>".encode()
        )
        objects.append(
            f"<< /Type /FontDescriptor /FontName /Embedded /Flags 32 /ItalicAngle 0 "
            f"/FontBBox [-544 -303 1302 980] /Ascent 905 /Descent -212 /CapHeight 729 "
            f"/StemV 80 /FontFile2 {embedded + 2} 0 R >>".encode()
        )
        objects.append(
            b"<< /Length %d /Length1 %d >>\nstream\n" % (len(font_file), len(font_file))
            + font_file
            + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


PNG = make_png()
PDF = make_pdf(pages=2)
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 600


async def one_document(client, email: str, name: str, data: bytes) -> tuple[str, Document]:
    # Radiology takes every kind (PDFs, photos and DICOM images).
    _, uid = await new_case(client, email, "radiology")
    response = await upload(client, uid, name, data, token_in="header")
    assert response.status_code == 303, response.text
    [doc] = await Document.objects().where(Document.display_name == name)
    return uid, doc


async def preview_rows() -> list[AuditEvent]:
    return await AuditEvent.objects().where(AuditEvent.action == "document.preview")


async def test_preview_is_sandboxed_inline_and_typed_by_content(client) -> None:
    # A PNG named like a web page is still a PNG: the type comes from its bytes.
    uid, doc = await one_document(client, "png@example.com", "x.html", PNG)
    response = await client.get(f"/cases/{uid}/documents/{doc.uid}/preview")
    assert response.status_code == 200 and response.content == PNG
    headers = response.headers
    assert headers["content-type"] == "image/png"
    assert headers["content-disposition"] == "inline; filename=\"x.html\"; filename*=UTF-8''x.html"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["cross-origin-resource-policy"] == "same-origin"
    # One policy only (a second, looser one would not loosen it, but say exactly what applies).
    assert headers.get_list("content-security-policy") == [SANDBOX_CSP]
    directives = [d.strip() for d in SANDBOX_CSP.split(";")]
    assert directives[0] == "sandbox"  # no allow-* tokens: no scripts, forms, popups, origin
    assert "default-src 'none'" in directives and "frame-ancestors 'none'" in directives
    assert not [d for d in directives if d.startswith(("script-src", "connect-src"))]

    pdf_uid, pdf = await one_document(client, "pdf@example.com", "report.pdf", PDF)
    got = await client.get(f"/cases/{pdf_uid}/documents/{pdf.uid}/preview")
    assert got.status_code == 200 and got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith("inline;")


async def test_view_page_shows_the_record_under_the_page_policy(client) -> None:
    name = "<img src=x onerror=alert(1)>.png"
    uid, doc = await one_document(client, "view@example.com", name, PNG)
    page = await client.get(f"/cases/{uid}/documents/{doc.uid}/view")
    assert page.status_code == 200
    # The page itself frames nothing and embeds no plugin: the strict page policy, unchanged.
    assert page.headers.get_list("content-security-policy") == [CSP]
    assert "frame-src" not in CSP and "object-src 'none'" in CSP
    assert page.headers["x-frame-options"] == "DENY"
    assert name not in page.text and "&lt;img src=x onerror=alert(1)&gt;.png" in page.text
    assert f'<img src="/cases/{uid}/documents/{doc.uid}/preview"' in page.text
    assert f'href="/cases/{uid}/documents/{doc.uid}"' in page.text  # Download
    assert f'href="/cases/{uid}"' in page.text  # back to the request

    pdf_uid, pdf = await one_document(client, "view-pdf@example.com", "letter.pdf", PDF)
    pdf_page = await client.get(f"/cases/{pdf_uid}/documents/{pdf.uid}/view")
    assert f'data-src="/cases/{pdf_uid}/documents/{pdf.uid}/preview"' in pdf_page.text
    assert '<script type="module" src="/static/preview.js">' in pdf_page.text
    # The view page reads no content; only fetching the bytes is a read.
    assert await preview_rows() == []


async def test_the_case_page_offers_view_only_for_what_a_browser_can_show(client) -> None:
    _, uid = await new_case(client, "list@example.com", slug="radiology")
    dicom = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    for name, data in [("scan.png", PNG), ("report.pdf", PDF), ("IM0001", dicom)]:
        assert (await upload(client, uid, name, data, token_in="header")).status_code == 303
    page = (await client.get(f"/cases/{uid}")).text
    for doc in await Document.objects():
        has_view = f"/documents/{doc.uid}/view" in page
        assert has_view == (doc.kind != "dicom"), doc.display_name
    assert 'aria-label="View report.pdf">View</a>' in page


@pytest.mark.parametrize("name", ["IM0001", "photo.heic"])
async def test_kinds_a_browser_cannot_show_are_refused(client, name: str) -> None:
    # DICOM needs a viewer of its own; HEIC is decoded by Safari only.
    data = Path(get_testdata_file("CT_small.dcm")).read_bytes() if name == "IM0001" else HEIC
    uid, doc = await one_document(client, "no-preview@example.com", name, data)
    page = await client.get(f"/cases/{uid}/documents/{doc.uid}/view")
    assert page.status_code == 415 and "cannot be shown in the browser" in page.text
    assert f'href="/cases/{uid}/documents/{doc.uid}"' in page.text  # Download still offered
    assert "/preview" not in page.text
    raw = await client.get(f"/cases/{uid}/documents/{doc.uid}/preview")
    assert raw.status_code == 415 and data not in raw.content
    assert await preview_rows() == []


async def test_previews_are_audited_and_listed_for_the_patient(client, running_app) -> None:
    uid, doc = await one_document(client, "owner@example.com", "scan.png", PNG)
    async with open_client(running_app) as coordinator:
        person = await make_person("coordinator", "coord-preview@example.com")
        await sign_in(coordinator, person)
        view = await coordinator.get(f"/cases/{uid}/documents/{doc.uid}/view")
        assert view.status_code == 200 and 'href="/dashboard"' in view.text
        got = await coordinator.get(f"/cases/{uid}/documents/{doc.uid}/preview")
        assert got.status_code == 200 and got.content == PNG
    [row] = await preview_rows()
    assert row.actor_uid == str(person.user.uid) and row.actor_role == "coordinator"
    assert row.object_id == str(doc.uid) and row.case_id == uid and row.outcome == "success"
    access = (await client.get(f"/cases/{uid}/access")).text
    assert "Test Coordinator (coordinator)" in access and "Viewed scan.png" in access


async def test_other_people_get_404_and_the_denial_is_audited(client, running_app) -> None:
    uid, doc = await one_document(client, "private@example.com", "scan.pdf", PDF)
    denied_before = await AuditEvent.count().where(AuditEvent.action == "access.denied")
    paths = [f"/cases/{uid}/documents/{doc.uid}/view", f"/cases/{uid}/documents/{doc.uid}/preview"]
    for role, email in [("patient", "nosy@example.com"), ("doctor", "unassigned-p@example.com")]:
        async with open_client(running_app) as other:
            await sign_in(other, await make_person(role, email))
            for path in paths:
                response = await other.get(path)
                assert response.status_code == 404 and PDF not in response.content
    async with open_client(running_app) as anonymous:
        for path in paths:
            assert (await anonymous.get(path)).status_code == 303  # sign in first
    denied = await AuditEvent.count().where(AuditEvent.action == "access.denied")
    assert denied - denied_before == 4
    assert await preview_rows() == []
    # A document id from another case is unknown in this one.
    started = await client.post(
        "/requests/new", data={"specialty": "general"}, headers={"x-csrftoken": csrf_token(client)}
    )
    other_uid = started.headers["location"].split("/")[2]
    assert (await client.get(f"/cases/{other_uid}/documents/{doc.uid}/view")).status_code == 404


async def test_tampered_preview_is_cut_off(client, settings) -> None:
    # 3 MB: several sealed segments, the first ones sent before the bad one is reached.
    uid, doc = await one_document(client, "tamper-preview@example.com", "big.pdf", LARGE_PDF)
    [stored] = files_under(settings.var_dir / "documents" / "objects")
    raw = bytearray(stored.read_bytes())
    raw[-100] ^= 0x01  # a bit flip in the last segment
    stored.write_bytes(bytes(raw))
    with pytest.raises(Exception, match="after response started"):
        await client.get(f"/cases/{uid}/documents/{doc.uid}/preview")


def test_inline_disposition_keeps_the_sanitised_name() -> None:
    value = content_disposition("../scans/Röntgen\u202e gnp.exe.png", inline=True)
    assert value.startswith('inline; filename="')
    assert "filename*=UTF-8''R%C3%B6ntgen%20gnp.exe.png" in value and "/" not in value
    assert content_disposition("a.pdf").startswith("attachment;")

"""Which kinds of record a specialty takes (`Specialty.accepted_kinds`, `RequiredDocument.kinds`)
and how they read for people. The kind is sniffed from the content (core/documents/content.py),
never taken from a file name."""

from __future__ import annotations

from core.specialty import DocumentKind, Specialty

ZIP = "zip"  # a container: its entries are checked one by one
KIND_WORDS = {
    DocumentKind.PDF: "PDFs",
    DocumentKind.IMAGE: "photos (JPEG, PNG, HEIC or WebP)",
    DocumentKind.DICOM: "DICOM images",
}


def kinds_text(kinds: tuple[str, ...]) -> str:
    """ "PDFs, photos (JPEG, PNG, HEIC or WebP) or DICOM images" """
    words = [KIND_WORDS[kind] for kind in DocumentKind.ALL if kind in kinds]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def refusal(specialty: Specialty | None, kind: str) -> str | None:
    """Why a record of `kind` cannot be added to a case of `specialty`, or None when it can."""
    if specialty is None or kind == ZIP or kind in specialty.accepted_kinds:
        return None
    return (
        f"A {specialty.title.lower()} takes {kinds_text(specialty.accepted_kinds)}, "
        f"not {KIND_WORDS.get(kind, 'this kind of file')}."
    )


def checklist_item_for(specialty: Specialty | None, key: str | None, kind: str) -> str | None:
    """`key` if a record of `kind` can satisfy that checklist item (a PDF does not tick an item
    declared for photos only), else None."""
    if specialty is None or not key:
        return None
    item = next((d for d in specialty.required_documents if d.key == key), None)
    if item is None or (kind != ZIP and kind not in item.kinds):
        return None
    return key

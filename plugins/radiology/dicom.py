"""Reading the facts a coordinator needs from uploaded DICOM files, and summarising studies.

Only the header is read (`stop_before_pixels=True`), and only the tags listed in `TAGS`: pixel data
is never loaded, so neither numpy nor an image codec is needed. Nothing here raises on a bad file:
`read_dicom` returns the facts or a plain-language reason.

Guards beyond pydicom's defaults:
- pydicom reads a "Deflated Explicit VR Little Endian" file by inflating the whole rest of the
  file into memory at once (a DICOM zip bomb). Such files are inflated here in steps, up to
  `MAX_INFLATED_BYTES`, enough for any header.
- Values longer than `MAX_VALUE_BYTES` are not read into memory (pydicom's `defer_size`) and
  count as absent.
- pydicom's value validation is off: it logs offending values, which may identify a patient.
- pydicom silently accepts a file cut short in its header; a value shorter than its declared
  length, or a skipped value running past the end of the file, is reported as truncated here.
"""

from __future__ import annotations

import io
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date
from typing import BinaryIO, TypeVar

import pydicom
from pydicom import config
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian, MediaStorageDirectoryStorage
from pydicom.valuerep import PersonName

__all__ = [
    "DicomFacts",
    "DicomReading",
    "SeriesSummary",
    "StudySummary",
    "read_dicom",
    "read_dicom_facts",
    "summarise_studies",
]

MAX_VALUE_BYTES = 64 * 1024
MAX_INFLATED_BYTES = 16 * 1024 * 1024
MAX_TEXT = 200
UNDEFINED_LENGTH = 0xFFFFFFFF
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}

KEYWORDS = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "study_date": "StudyDate",
    "modality": "Modality",
    "body_part": "BodyPartExamined",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "series_number": "SeriesNumber",
    "instance_number": "InstanceNumber",
}
TAGS = [tag_for_keyword(keyword) for keyword in KEYWORDS.values()]

# pydicom reports an invalid value by logging and warning it *with the value*: a patient's name
# or ID from a malformed file would end up in the server log. Validation is switched off for
# reading (a process-wide pydicom setting; this plugin is Consilium's only pydicom user): every
# value used here is checked and cleaned below instead.
config.settings.reading_validation_mode = config.IGNORE
T = TypeVar("T")

TRUNCATED = "The file is cut short (truncated): it may not have been copied completely."
NOT_DICOM = "This is not a readable DICOM file."
NO_STUDY = (
    "The file is incomplete or cut short: it does not say which study it belongs to "
    "(no Study Instance UID)."
)
DIRECTORY = "This is a DICOMDIR, the table of contents of a CD or DVD, not an image."


@dataclass(frozen=True)
class DicomFacts:
    """What one DICOM file says about itself. Text is cleaned for display; absent → None."""

    study_uid: str
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    patient_name: str | None = None  # "Family, Given Middle"
    patient_id: str | None = None
    study_date: str | None = None  # ISO, "2026-10-02"
    modality: str | None = None  # DICOM code: "CT", "MR"…
    body_part: str | None = None  # DICOM code: "CHEST"…
    study_description: str | None = None
    series_description: str | None = None
    series_number: int | None = None
    instance_number: int | None = None

    def as_dict(self) -> dict[str, str]:
        """The facts that are present, as text (for `DocumentFacts.facts`)."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: str(value) for name, value in values if value is not None}

    @classmethod
    def from_dict(cls, values: dict[str, str]) -> DicomFacts | None:
        """Back from `as_dict` (stored facts); None for facts that are not a DICOM file's."""
        if not values.get("study_uid"):
            return None
        kept: dict[str, str | int] = {}
        for f in fields(cls):
            value = values.get(f.name)
            if value is not None and f.name in _NUMBERS:
                try:
                    kept[f.name] = int(value)
                except ValueError:
                    continue
            elif value is not None:
                kept[f.name] = value
        return cls(**kept)  # type: ignore[arg-type]


_NUMBERS = {"series_number", "instance_number"}


@dataclass(frozen=True)
class DicomReading:
    """The outcome of reading one file: `facts`, or `reason` why there are none. `directory` is
    True for a DICOMDIR (a CD's table of contents): not an image, but not a fault either."""

    facts: DicomFacts | None
    reason: str | None = None
    directory: bool = False


def read_dicom_facts(fileobj: BinaryIO) -> DicomFacts | None:
    """The facts of the DICOM file in `fileobj`, or None (see `read_dicom` for the reason)."""
    return read_dicom(fileobj).facts


def read_dicom(fileobj: BinaryIO) -> DicomReading:
    """Read the header of the DICOM Part 10 file in `fileobj` (binary, seekable, positioned at the
    start of the file). Never raises for a bad file."""
    try:
        return _read(fileobj)
    except InvalidDicomError:
        return DicomReading(None, NOT_DICOM)
    except EOFError:
        return DicomReading(None, TRUNCATED)
    except Exception as exc:  # any parsing failure of a hostile or broken file
        return DicomReading(None, f"{NOT_DICOM} ({type(exc).__name__})")


def _read(fileobj: BinaryIO) -> DicomReading:
    start = fileobj.tell()
    end = fileobj.seek(0, io.SEEK_END)
    fileobj.seek(start)
    read_preamble(fileobj, False)  # raises InvalidDicomError without "DICM" at offset 128
    meta = _read_file_meta_info(fileobj)
    if meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        return DicomReading(None, DIRECTORY, directory=True)
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        inflated, complete = _inflate(fileobj)
        stream = io.BytesIO(inflated)
        dataset = read_dataset(
            stream,
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=_at_pixel_data,
            defer_size=MAX_VALUE_BYTES,
            specific_tags=TAGS,
        )
        truncated = complete and stream.tell() > len(inflated)
    else:
        fileobj.seek(start)
        dataset = pydicom.dcmread(
            fileobj,
            stop_before_pixels=True,
            force=False,
            defer_size=MAX_VALUE_BYTES,
            specific_tags=TAGS,
        )
        truncated = fileobj.tell() > end
    if truncated or _has_short_value(dataset):
        return DicomReading(None, TRUNCATED)
    values = {name: _value(dataset, keyword) for name, keyword in KEYWORDS.items()}
    study_uid = _uid(values.pop("study_uid"))
    if not study_uid:
        return DicomReading(None, NO_STUDY)
    facts = DicomFacts(
        study_uid=study_uid,
        series_uid=_uid(values["series_uid"]),
        sop_instance_uid=_uid(values["sop_instance_uid"]),
        patient_name=_person(values["patient_name"]),
        patient_id=_text(values["patient_id"]),
        study_date=_date(values["study_date"]),
        modality=_code(values["modality"]),
        body_part=_code(values["body_part"]),
        study_description=_text(values["study_description"]),
        series_description=_text(values["series_description"]),
        series_number=_int(values["series_number"]),
        instance_number=_int(values["instance_number"]),
    )
    return DicomReading(facts)


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    return tag in PIXEL_TAGS


def _inflate(fileobj: BinaryIO) -> tuple[bytes, bool]:
    """Inflate the deflated data set after the file meta, up to MAX_INFLATED_BYTES. Returns the
    bytes and whether they are the whole data set."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = b""
    while len(out) < MAX_INFLATED_BYTES:
        if not pending:
            pending = fileobj.read(64 * 1024)
            if not pending:
                break
        out += inflater.decompress(pending, MAX_INFLATED_BYTES - len(out))
        pending = inflater.unconsumed_tail
        if inflater.eof:
            return bytes(out), True
    return bytes(out), len(out) < MAX_INFLATED_BYTES


def _has_short_value(dataset: Dataset) -> bool:
    for tag in list(dataset.keys()):
        raw = dataset.get_item(tag, keep_deferred=True)
        if (
            isinstance(raw, RawDataElement)
            and isinstance(raw.value, bytes)
            and raw.length != UNDEFINED_LENGTH
            and len(raw.value) < raw.length
        ):
            return True
    return False


def _value(dataset: Dataset, keyword: str) -> object:
    """The converted value of one element, or None when absent, too long to read, or invalid."""
    tag = tag_for_keyword(keyword)
    raw = dataset.get_item(tag, keep_deferred=True) if tag in dataset else None
    if raw is None or (isinstance(raw, RawDataElement) and raw.value is None and raw.length):
        return None  # absent, or deferred because longer than MAX_VALUE_BYTES
    try:
        value = dataset[tag].value
    except Exception:  # an invalid value: leave that one fact out
        return None
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else None
    return value


def _text(value: object) -> str | None:
    if value is None or isinstance(value, bytes):
        return None
    return clean_display_text(str(value))[:MAX_TEXT] or None


def _code(value: object) -> str | None:
    text = _text(value)
    return text.upper()[:16] if text else None


def _uid(value: object) -> str | None:
    text = _text(value)
    return text[:64].strip("\x00 ") if text else None


def _person(value: object) -> str | None:
    if not isinstance(value, PersonName):
        return _text(value)
    try:
        groups = value.components  # alphabetic, ideographic, phonetic
    except Exception:
        return None
    for group in groups:
        parts = [clean_display_text(part) for part in group.split("^")]
        family = parts[0] if parts else ""
        given = " ".join(part for part in parts[1:3] if part)
        text = ", ".join(part for part in (family, given) if part)
        if text:
            return text[:MAX_TEXT]
    return None


def _date(value: object) -> str | None:
    """DICOM DA ("20261002", or the retired "2026.10.02") as ISO text; None if not a date."""
    text = (_text(value) or "").replace(".", "")
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
    except ValueError:
        return None


def _int(value: object) -> int | None:
    try:
        number = int(str(value).strip()) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and abs(number) < 2**31 else None


def clean_display_text(text: str) -> str:
    """Text from a file, made safe to show on one line: no control, bidi-override or other
    invisible formatting characters (zero-width joiners kept), NFC, white space collapsed.
    (Plugins use only core's public API, so this mirrors core.documents.content.)"""
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs") or (category == "Cf" and char not in "\u200c\u200d"):
            if category == "Cc" and char.isspace():
                kept.append(" ")
            continue
        kept.append(char)
    return " ".join(unicodedata.normalize("NFC", "".join(kept)).split())


# --- summaries ----------------------------------------------------------------------------------

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MODALITY_NAMES = {
    "MR": "MRI",
    "PT": "PET",
    "CR": "X-ray",
    "DX": "X-ray",
    "RF": "fluoroscopy",
    "US": "ultrasound",
    "MG": "mammogram",
    "NM": "nuclear medicine",
    "XA": "angiography",
}
NOT_IMAGES = {"SR", "KO", "PR", "DOC", "REG", "OT"}  # left out of the label only
BODY_PART_NAMES = {
    "WHOLEBODY": "whole body",
    "CSPINE": "cervical spine",
    "TSPINE": "thoracic spine",
    "LSPINE": "lumbar spine",
    "SSPINE": "sacrum",
    "CHESTABDOMEN": "chest and abdomen",
    "CHESTABDPELVIS": "chest, abdomen and pelvis",
    "ABDOMENPELVIS": "abdomen and pelvis",
    "ABDPELV": "abdomen and pelvis",
    "HEADNECK": "head and neck",
}


@dataclass(frozen=True)
class SeriesSummary:
    series_uid: str | None
    number: int | None
    modality: str | None
    body_part: str | None
    description: str | None
    image_count: int


@dataclass(frozen=True)
class StudySummary:
    study_uid: str
    study_date: str | None  # ISO
    modalities: tuple[str, ...]  # DICOM codes, in order of first appearance
    body_parts: tuple[str, ...]
    description: str | None
    patient_names: tuple[str, ...]  # more than one deserves a look
    series: tuple[SeriesSummary, ...]
    image_count: int
    label: str  # "CT chest, 2 Oct 2026, 312 images"

    @property
    def series_count(self) -> int:
        return len(self.series)


def summarise_studies(facts: Iterable[DicomFacts]) -> list[StudySummary]:
    """Group files by study, then series; newest study first (undated last). A file seen twice
    (same SOP Instance UID) counts once."""
    studies: dict[str, dict[str | None, list[DicomFacts]]] = {}
    for item in facts:
        studies.setdefault(item.study_uid, {}).setdefault(item.series_uid, []).append(item)
    summaries = [_summarise(uid, series) for uid, series in studies.items()]
    summaries.sort(key=lambda s: s.study_uid)
    summaries.sort(key=lambda s: s.study_date or "", reverse=True)
    return summaries


def describe_study(facts: Iterable[DicomFacts]) -> tuple[list[str], list[str]]:
    """For the reviewer: who the headers name and the series of each study, as lines of text;
    and warnings (more than one patient named)."""
    items = list(facts)
    patients = _unique(
        f"{item.patient_name or 'no name recorded'} (ID {item.patient_id or 'no ID recorded'})"
        for item in items
    )
    lines = [
        ("Patients" if len(patients) > 1 else "Patient") + " in the headers: " + "; ".join(patients)
    ]
    for study in summarise_studies(items):
        for series in study.series:
            head = f"Series {series.number}" if series.number is not None else "Series"
            if series.description:
                head += f": {series.description}"
            count = series.image_count
            lines.append(f"{head}, {count:,} image" + ("" if count == 1 else "s"))
    warnings = []
    if len(patients) > 1:
        warnings.append(
            "These files name more than one patient: check them before the study is read."
        )
    return lines, warnings


def _summarise(study_uid: str, by_series: dict[str | None, list[DicomFacts]]) -> StudySummary:
    everything = [item for items in by_series.values() for item in items]
    series = tuple(
        sorted(
            (_summarise_series(uid, items) for uid, items in by_series.items()),
            key=lambda s: (s.number is None, s.number or 0, s.series_uid or ""),
        )
    )
    study_date = _first(item.study_date for item in everything)
    modalities = _unique(item.modality for item in everything)
    body_parts = _unique(item.body_part for item in everything)
    image_count = sum(s.image_count for s in series)
    description = _first(item.study_description for item in everything) or _first(
        s.description for s in series
    )
    return StudySummary(
        study_uid=study_uid,
        study_date=study_date,
        modalities=modalities,
        body_parts=body_parts,
        description=description,
        patient_names=_unique(item.patient_name for item in everything),
        series=series,
        image_count=image_count,
        label=_label(modalities, body_parts, study_date, image_count),
    )


def _summarise_series(uid: str | None, items: list[DicomFacts]) -> SeriesSummary:
    instances = {item.sop_instance_uid or f"#{i}" for i, item in enumerate(items)}
    return SeriesSummary(
        series_uid=uid,
        number=_first(item.series_number for item in items),
        modality=_first(item.modality for item in items),
        body_part=_first(item.body_part for item in items),
        description=_first(item.series_description for item in items),
        image_count=len(instances),
    )


def _label(
    modalities: tuple[str, ...], body_parts: tuple[str, ...], study_date: str | None, count: int
) -> str:
    kinds = [MODALITY_NAMES.get(m, m) for m in modalities if m not in NOT_IMAGES]
    parts = [BODY_PART_NAMES.get(b, b.lower().replace("_", " ")) for b in body_parts]
    what = " ".join(p for p in ("/".join(_unique(kinds)), " and ".join(parts)) if p)
    what = what[:1].upper() + what[1:] if what else "Imaging study"
    pieces = [what]
    if study_date:
        day = date.fromisoformat(study_date)
        pieces.append(f"{day.day} {MONTHS[day.month - 1]} {day.year}")
    pieces.append(f"{count:,} image" + ("" if count == 1 else "s"))
    return ", ".join(pieces)


def _first(values: Iterable[T | None]) -> T | None:
    return next((v for v in values if v is not None), None)


def _unique(values: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))

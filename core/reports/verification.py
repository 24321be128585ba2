"""Is this file a report we issued, and is it the current version? (`/verify`, public.)

A report's number (printed on every page) and the SHA-256 of the file are looked up together,
among issued versions only. The answer says which version it is, when it was issued and, if a
later version replaced it, which and when — and nothing else: no name, no specialty, no case.

An unknown number and a known number with a file that matches none of its versions get the
same answer, from the same query: someone holding no report learns nothing, not even whether a
number exists. (Numbers are random; see `new_report_number`.)
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from core import context
from core.reports.tables import Report, ReportVersion

__all__ = ["ISSUED", "Verdict", "new_report_number", "normalise_number", "verify"]

ISSUED = "issued"
# No 0/O or 1/I: a number read aloud or copied from paper cannot be mistyped into another.
ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
GROUPS, GROUP_SIZE = 3, 4  # "R-7K3M-9QXD-2HPA": 12 characters of 32 kinds, 60 random bits
_DASHES = re.compile(r"[\s\-‐‑‒–—―]+")
_PREFIX = re.compile(r"R[\s\-‐‑‒–—―]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Verdict:
    """What `/verify` may tell anyone: whether the file is a version of the report with this
    number, and where that version stands. Holds no medical data."""

    number: str  # normalised ("R-7K3M-9QXD-2HPA"); as given when it could not be
    authentic: bool = False
    current: bool = False
    version: int | None = None
    issued_on: date | None = None
    superseded_on: date | None = None  # the day the next issued version replaced it
    superseded_by: int | None = None  # that version's number

    @property
    def outcome(self) -> str:
        """For the audit log: authentic, superseded or no_match."""
        if not self.authentic:
            return "no_match"
        return "authentic" if self.current else "superseded"


ENTRY_MESSAGES = {
    "number": "Enter the report number as printed on the report, like R-7K3M-9QXD-2HPA "
    "(12 letters and digits after the R; there is no letter O or I, and no digit 0 or 1).",
    "missing": "Choose the report's PDF file, or paste its SHA-256 fingerprint.",
    "sha256": "A SHA-256 fingerprint is 64 characters, digits 0–9 and letters a–f. Check that "
    "you copied all of it.",
    "both_differ": "The file and the fingerprint you pasted are not the same. Give only one of "
    "them.",
}


def check_entries(
    number: str | None, pasted: str | None, file_sha256: str, known: Mapping[str, str]
) -> tuple[str | None, str, dict[str, str]]:
    """What a check was asked: (the normalised number, the SHA-256 to look up, the errors by
    field). One of the file (its `file_sha256`) and a pasted fingerprint is needed; both may be
    given if they agree. `known`: the problems found reading the form (a file too large…)."""
    errors = dict(known)
    normalised = normalise_number(number)
    pasted = (pasted or "").strip()
    digest = normalise_sha256(pasted) if pasted else None
    if normalised is None and "number" not in errors:
        errors["number"] = ENTRY_MESSAGES["number"]
    if pasted and digest is None:
        errors["sha256"] = ENTRY_MESSAGES["sha256"]
    elif "file" in errors:
        pass  # the file's own problem says enough
    elif not file_sha256 and not digest:
        errors["file"] = ENTRY_MESSAGES["missing"]
    elif file_sha256 and digest and file_sha256 != digest:
        errors["sha256"] = ENTRY_MESSAGES["both_differ"]
    return normalised, file_sha256 or digest or "", errors


def supersessions(issued: Mapping[int, datetime]) -> dict[int, tuple[int, datetime]]:
    """The one rule of which version replaced which: {version: (the next issued version, when
    it replaced it)} for every issued version that is not the current one. The next higher
    version replaces it; if that one was issued first (this one's render was retried), from the
    moment this one was issued. `issued`: {version: issued_at} of the issued versions."""
    order = sorted(issued)
    return {
        this: (following, max(issued[this], issued[following]))
        for this, following in itertools.pairwise(order)
    }


def new_report_number() -> str:
    """A random report number, "R-XXXX-XXXX-XXXX" (16 characters, 60 bits from `secrets`)."""
    characters = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_SIZE))
    return "R-" + "-".join(
        characters[start : start + GROUP_SIZE] for start in range(0, len(characters), GROUP_SIZE)
    )


def normalise_number(text: str | None) -> str | None:
    """A report number as typed ("r 7k3m9qxd2hpa", "7K3M-9QXD-2HPA") in its printed form, or
    None when it cannot be one (wrong length, or a character no number has)."""
    if not text:
        return None
    text = text.strip().upper()
    size = GROUPS * GROUP_SIZE
    # "R" is also a character of the random part: it is the prefix when a dash or a space
    # follows it, or when it makes the 13th character.
    prefixed = _PREFIX.match(text)
    compact = _DASHES.sub("", text[prefixed.end() :] if prefixed else text)
    if not prefixed and len(compact) == size + 1 and compact.startswith("R"):
        compact = compact[1:]
    if len(compact) != size or any(c not in ALPHABET for c in compact):
        return None
    groups = [compact[start : start + GROUP_SIZE] for start in range(0, len(compact), GROUP_SIZE)]
    return "R-" + "-".join(groups)


def normalise_sha256(text: str | None) -> str | None:
    """64 hex digits, lower-case (spaces and a "sha256:" prefix allowed), or None."""
    if not text:
        return None
    compact = re.sub(r"\s+", "", text).lower().removeprefix("sha256:")
    return compact if _HEX64.fullmatch(compact) else None


async def verify(number: str, sha256: str) -> Verdict:
    """The verdict on a file whose SHA-256 is `sha256`, said to be report `number`."""
    normalised = normalise_number(number)
    digest = normalise_sha256(sha256)
    no_match = Verdict(number=normalised or number.strip())
    if normalised is None or digest is None:
        return no_match
    # Number and hash in one query, so an unknown number and a wrong file take the same path.
    found = (
        await ReportVersion.select(ReportVersion.report, ReportVersion.version)
        .where(
            (ReportVersion.report.number == normalised)
            & (ReportVersion.sha256 == digest)
            & (ReportVersion.status == ISSUED)
        )
        .first()
    )
    if found is None:
        return no_match
    versions = (
        await ReportVersion.select(ReportVersion.version, ReportVersion.issued_at)
        .where((ReportVersion.report == found["report"]) & (ReportVersion.status == ISSUED))
        .order_by(ReportVersion.version)
    )
    zone = ZoneInfo(context.settings().time_zone)
    issued = {row["version"]: row["issued_at"] for row in versions}
    following, replaced_at = supersessions(issued).get(found["version"], (None, None))
    return Verdict(
        number=normalised,
        authentic=True,
        current=following is None,
        version=found["version"],
        issued_on=_day(issued.get(found["version"]), zone),
        superseded_on=_day(replaced_at, zone),
        superseded_by=following,
    )


async def report_uid(number: str) -> str | None:
    """The uid of the report with this (normalised) number, for the audit log of a match."""
    row = await Report.select(Report.uid).where(Report.number == number).first()
    return str(row["uid"]) if row else None


def _day(moment: datetime | None, zone: ZoneInfo) -> date | None:
    return moment.astimezone(zone).date() if moment is not None else None

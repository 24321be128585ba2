"""Declarative types a specialty plugin returns. A specialty is mostly data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Specialty:
    slug: str  # stable identifier, lower case, used in URLs and stored on cases
    title: str  # "Radiology second opinion"
    summary: str  # one plain-language sentence for patients: "Choose this when…"

"""Cross-field checks for the pathology intake (run after every field passed its own checks)."""

from __future__ import annotations

from datetime import date
from typing import Any


def as_date(value: Any) -> date | None:
    """A cleaned date answer (ISO text) as a date; None when empty or unreadable."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def check_intake(values: dict[str, Any], birth_date: date | None) -> dict[str, str]:
    errors: dict[str, str] = {}
    collected = as_date(values.get("collection_date"))
    if birth_date and collected and collected < birth_date:
        errors["collection_date"] = (
            "This date is before the patient was born. Check the date the sample was taken."
        )
    tests = values.get("tests_done") or []
    if "unknown" in tests and len(tests) > 1:
        errors["tests_done"] = (
            "You ticked “I don't know” and also a test. Untick “I don't know”, or untick the tests."
        )
    return errors

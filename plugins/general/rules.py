"""Cross-field checks for the general intake (run after every field passed its own checks)."""

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
    diagnosed = as_date(values.get("diagnosis_date"))
    if birth_date and diagnosed and diagnosed < birth_date:
        errors["diagnosis_date"] = (
            "This date is before the patient was born. Check the date you were told about "
            "the diagnosis."
        )
    return errors

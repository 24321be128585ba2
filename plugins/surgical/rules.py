"""Cross-field checks for the surgical intake (run after every field passed its own checks)."""

from __future__ import annotations

from datetime import date
from typing import Any


def check_intake(
    values: dict[str, Any], birth_date: date | None, today: date | None = None
) -> dict[str, str]:
    today = today or date.today()
    errors: dict[str, str] = {}

    comorbidities = values.get("comorbidities") or []
    if "none" in comorbidities and len(comorbidities) > 1:
        errors["comorbidities"] = (
            "You ticked “None of these” and also a health problem. Untick one of them."
        )
    alternatives = values.get("alternatives") or []
    if "none_discussed" in alternatives and len(alternatives) > 1:
        errors["alternatives"] = (
            "You ticked “No other choices were talked about” and also another choice. "
            "Untick one of them."
        )

    for index, item in enumerate(values.get("prior_surgeries") or []):
        year = item.get("year")
        if not isinstance(year, int):
            continue
        key = f"prior_surgeries.{index}.year"
        if year > today.year:
            errors[key] = f"This year is in the future. Enter {today.year} or earlier."
        elif birth_date and year < birth_date.year:
            errors[key] = (
                f"This is before the patient was born ({birth_date.year}). Check the year."
            )
    return errors

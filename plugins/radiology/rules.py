"""Cross-field checks for the radiology intake (run after every field passed its own checks)."""

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


def check_intake(values: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    study = as_date(values.get("study_date"))
    if values.get("modality") == "mammogram" and values.get("body_part") not in (None, "breast"):
        errors["body_part"] = (
            "A mammogram is an X-ray of the breast. Choose “Breast”, or change the kind of scan."
        )
    for index, item in enumerate(values.get("prior_studies") or []):
        prior = as_date(item.get("study_date"))
        if prior is None:
            continue
        if study and prior > study:
            errors[f"prior_studies.{index}.study_date"] = (
                "An earlier scan must be from before the scan you want reviewed "
                f"({study.isoformat()}). Check the date, or swap the two scans."
            )
    return errors

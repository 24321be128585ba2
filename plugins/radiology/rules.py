"""Cross-field checks for the radiology intake (run after every field passed its own checks),
and the subspecialty a case needs."""

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


CHILD_BELOW_YEARS = 16  # the subject is a child for paediatric radiology below this age

# Where the scan is → the subspecialty that reads it.
_BY_BODY_PART = {
    "head": "neuroradiology",
    "face": "neuroradiology",
    "neck": "neuroradiology",
    "spine": "neuroradiology",
    "chest": "thoracic",
    "heart": "cardiac",
    "breast": "breast",
    "abdomen": "abdominal",
    "pelvis": "abdominal",
    "arm": "musculoskeletal",
    "leg": "musculoskeletal",
}


def suggest_subspecialty(values: dict[str, Any], age: int | None) -> str | None:
    """A child's scan goes to a paediatric radiologist; otherwise by the part of the body (a
    mammogram is breast imaging whatever was chosen); None when nothing points anywhere."""
    if age is not None and age < CHILD_BELOW_YEARS:
        return "paediatric"
    if values.get("modality") == "mammogram":
        return "breast"
    return _BY_BODY_PART.get(str(values.get("body_part") or ""))


# BI-RADS categories that call for tissue diagnosis (ACR BI-RADS Atlas, 5th edition).
BIOPSY_CATEGORIES = ("4A", "4B", "4C", "5")
SAMPLING_WORDS = ("biopsy", "tissue sampling", "fna", "fine needle", "core needle", "aspiration")


def check_review(values: dict[str, Any]) -> dict[str, str]:
    """Rules across the review's fields, checked before signing."""
    errors: dict[str, str] = {}
    recommendation = str(values.get("recommendation") or "").lower()
    if values.get("birads") in BIOPSY_CATEGORIES and not any(
        word in recommendation for word in SAMPLING_WORDS
    ):
        errors["recommendation"] = (
            f"BI-RADS {values['birads']} requires a tissue-sampling recommendation "
            "(for example: ultrasound-guided core needle biopsy)."
        )
    return errors

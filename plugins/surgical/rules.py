"""Cross-field checks for the surgical intake (run after every field passed its own checks)."""

from __future__ import annotations

from typing import Any


def check_intake(values: dict[str, Any]) -> dict[str, str]:
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
    return errors


def check_review(values: dict[str, Any]) -> dict[str, str]:
    """Rules across the review's fields, checked before signing."""
    errors: dict[str, str] = {}
    if values.get("concordance") == "different_operation" and values.get("surgery_indicated") != (
        "yes"
    ):
        errors["surgery_indicated"] = (
            "“Partially disagree: a different operation” means surgery is indicated: answer "
            "“Yes” and name the recommended operation and approach."
        )
    return errors

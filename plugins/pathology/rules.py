"""Cross-field checks for the pathology intake (run after every field passed its own checks),
and the subspecialty a case needs."""

from __future__ import annotations

from typing import Any


def check_intake(values: dict[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    tests = values.get("tests_done") or []
    if "unknown" in tests and len(tests) > 1:
        errors["tests_done"] = (
            "You ticked “I don't know” and also a test. Untick “I don't know”, or untick the tests."
        )
    return errors


CHILD_BELOW_YEARS = 16  # the subject is a child for paediatric pathology below this age


def suggest_subspecialty(values: dict[str, Any], age: int | None) -> str | None:
    """A child's material goes to a paediatric pathologist; blood and bone marrow to
    haematopathology; skin biopsies to dermatopathology; cells (cytology, needle aspirates,
    smears, fluids) to cytopathology; camera-test biopsies to gastrointestinal pathology."""
    if age is not None and age < CHILD_BELOW_YEARS:
        return "paediatric"
    kind, specimen = values.get("report_kind"), values.get("specimen_type")
    if kind == "blood_work" or specimen == "bone_marrow":
        return "haematopathology"
    if specimen == "skin":
        return "dermatopathology"
    if kind == "cytology" or specimen in ("fine_needle", "smear", "fluid"):
        return "cytopathology"
    if specimen == "endoscopic":
        return "gastrointestinal"
    return None

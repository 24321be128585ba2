"""Cross-field checks for the pathology intake (run after every field passed its own checks)."""

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

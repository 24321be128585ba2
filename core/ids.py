"""Public ids (UUIDs in URLs and forms) read from what a browser sent."""

from __future__ import annotations

import uuid


def parse_uuid(value: object) -> uuid.UUID | None:
    """The UUID `value` spells, or None for anything else (a typo, a probe, an empty field)."""
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return None

"""How sizes read for people ("2.5 MB"): one formatter for pages, emails and refusals."""

from __future__ import annotations


def filesize(size: int, *, decimals: int = 1) -> str:
    """ "3.2 MB", "512 bytes"; `decimals=0` for limits ("The most we accept here is 100 KB")."""
    for unit, step in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= step:
            return f"{size / step:,.{decimals}f} {unit}"
    return f"{size} bytes"

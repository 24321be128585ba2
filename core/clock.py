"""The one clock: every service asks here for the time (stored times are UTC).

Tests that need another time patch `core.clock.now`; services call it through the module
(`clock.now()`), so one patch moves every domain's time at once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def now() -> datetime:
    return datetime.now(UTC)


def local_date(at: datetime, time_zone: str) -> date:
    """The calendar day `at` falls on in the deployment's time zone."""
    return at.astimezone(ZoneInfo(time_zone)).date()

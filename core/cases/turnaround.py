"""The turnaround clock: a due date N working days after a case is received.

Working days skip the configured weekend and the public holidays of one country (the
`holidays` package, which knows moving holidays such as Eid from its own tables).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays


def add_working_days(start: date, days: int, *, country: str, weekend: list[int]) -> date:
    """The day on which `days` working days after `start` have passed (`start` itself does not
    count, so a case received on Thursday with 1 day is due on the next working day)."""
    calendar = holidays.country_holidays(country, years=range(start.year, start.year + 2))
    day, left = start, days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() not in weekend and day not in calendar:
            left -= 1
    return day


def working_days_later(
    at: datetime, days: int, *, time_zone: str, country: str, weekend: list[int]
) -> datetime:
    """The same time of day, `days` working days after `at` (in the deployment's time zone):
    an offer made on Friday at 16:00 with one working day runs to Monday 16:00."""
    zone = ZoneInfo(time_zone)
    local = at.astimezone(zone)
    day = add_working_days(local.date(), days, country=country, weekend=weekend)
    return datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=zone)

"""The turnaround clock: a due date N working days after a case is received.

Working days skip the configured weekend and the public holidays of one country (the
`holidays` package, which knows moving holidays such as Eid from its own tables).
"""

from __future__ import annotations

from datetime import date, timedelta

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

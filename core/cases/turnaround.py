"""The turnaround clock: a due date N working days after a case is received.

Working days skip the configured weekend and the public holidays of one country (the
`holidays` package, which knows moving holidays such as Eid from its own tables).
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays


@functools.lru_cache(maxsize=64)
def _calendar(country: str, first_year: int, last_year: int) -> holidays.HolidayBase:
    """A country's holidays for these years, built once (1.8 ms each time otherwise: measured
    as most of a queue page's server time, one per row, in bench/queue.py). Read only."""
    return holidays.country_holidays(country, years=range(first_year, last_year + 1))


def add_working_days(start: date, days: int, *, country: str, weekend: list[int]) -> date:
    """The day on which `days` working days after `start` have passed (`start` itself does not
    count, so a case received on Thursday with 1 day is due on the next working day)."""
    calendar = _calendar(country, start.year, start.year + 1)
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


def working_days_left(today: date, due: date, *, country: str, weekend: list[int]) -> int:
    """Working days after `today` up to and including `due` (0 on the due day itself, and
    after it)."""
    if due <= today:
        return 0
    calendar = _calendar(country, today.year, due.year)
    day, left = today, 0
    while day < due:
        day += timedelta(days=1)
        if day.weekday() not in weekend and day not in calendar:
            left += 1
    return left


# How a due date stands on a given day. A case is due by the end of its due day in the
# hospital's time zone; it is at risk while at most one working day is left (the working day
# before the due day, any weekend or holiday between, and the due day itself), and overdue
# from the day after the due day.
AT_RISK, OVERDUE = "at_risk", "overdue"


def due_state(today: date, due: date | None, *, country: str, weekend: list[int]) -> str:
    """ "overdue", "at_risk" or "" (on time, or no due date)."""
    if due is None:
        return ""
    if today > due:
        return OVERDUE
    if working_days_left(today, due, country=country, weekend=weekend) <= 1:
        return AT_RISK
    return ""

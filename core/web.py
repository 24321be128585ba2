"""Small helpers shared by the route modules (kept free of business rules)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment
from litestar import Request
from litestar.response import Redirect, Template

from core.formatting import filesize
from core.forms import (
    MappingFormData,
    condition_text,
    controlling_names,
    display_value,
    group_indexes,
)
from core.settings import Settings

# Fixed notices shown after a redirect (`?notice=key`): never free text, never PHI in URLs.
NOTICES: dict[str, tuple[str, str]] = {
    "check-email": ("info", "Check your email: we sent you a link to confirm your address."),
    "email-verified": ("success", "Thank you, your email address is confirmed."),
    "link-invalid": (
        "error",
        "That link has expired or was already used. You can ask for a new one.",
    ),
    "reset-sent": (
        "info",
        "If an account uses that address, we have emailed a link to reset the password. "
        "It works for one hour.",
    ),
    "password-set": ("success", "Your password is set. Please sign in with it."),
    "password-changed": (
        "success",
        "Your password is changed. Other devices have been signed out.",
    ),
    "signed-out": ("info", "You are signed out."),
    "signed-out-everywhere": ("success", "You are signed out on every other device."),
    "profile-saved": ("success", "Your details are saved."),
    "mfa-required": (
        "info",
        "Staff accounts need two-factor sign-in. Set it up now with an authenticator app.",
    ),
    "mfa-disabled": ("info", "Two-factor sign-in is off."),
    "mfa-kept": ("error", "Staff accounts need two-factor sign-in, so it stays on."),
    "verification-sent": ("info", "We sent you a new confirmation link."),
    "staff-created": ("success", "The account is created and an invitation was emailed."),
    "staff-saved": ("success", "The changes are saved."),
    "staff-disabled": ("success", "The account is disabled and its sessions have ended."),
    "staff-enabled": ("success", "The account is enabled again."),
    "session-ended": ("info", "Your session ended. Please sign in again."),
    "request-submitted": (
        "success",
        "Your request is submitted. Next: upload your records and pay the fee.",
    ),
    "link-revoked": ("success", "The link is revoked. It no longer works."),
    "records-uploaded": ("success", "Your files are uploaded and stored encrypted."),
    "records-left-out": (
        "warning",
        "Your files are uploaded and stored encrypted, but we could not keep some of the files "
        "in your ZIP. The list below says which ones and why.",
    ),
    "request-cancelled": ("info", "The request is cancelled."),
    "cannot-cancel": ("error", "This request can no longer be cancelled. Please contact us."),
    "payment-returned": (
        "info",
        "Thank you. The page shows your payment as soon as the payment service confirms it.",
    ),
    "payment-failed": (
        "error",
        "The payment did not go through and nothing was charged. You can try again.",
    ),
    "payment-abandoned": ("info", "The payment was not completed. Nothing was charged."),
    "payment-offline": (
        "info",
        "Please pay using the instructions below. We start once our staff see your payment.",
    ),
    "payment-recorded": ("success", "The payment is recorded."),
    "case-declined": ("success", "The case is declined; refunds are shown below."),
    "refund-recorded": ("success", "The refund is recorded."),
    "case-offered": ("success", "The case is offered to the doctor you chose."),
    "case-moved": (
        "success",
        "The case is offered to the new doctor; the other no longer sees it.",
    ),
    "offer-accepted": ("success", "You have accepted this case. It is now in your list of cases."),
    "offer-declined": ("success", "You declined the case. We will find another doctor for it."),
    "case-handed-back": ("success", "You handed the case back to the coordinators."),
    "settings-saved": ("success", "Your reviewing settings are saved."),
    "review-saved": ("success", "Your draft is saved."),
    "review-signed": (
        "success",
        "The review is signed. Its report is issued and the patient is told, unless you hold it "
        "for a call.",
    ),
    "amendment-signed": (
        "success",
        "The amended report is signed. It replaces the earlier version; the patient is told.",
    ),
    "addendum-signed": (
        "success",
        "The addendum is signed. The patient is told of the new version.",
    ),
    "urgent-marked": ("success", "Marked as urgent: the coordinators are alerted."),
    "urgent-in-hand": ("success", "You have taken the urgent finding in hand."),
    "communication-logged": ("success", "The conversation is logged."),
    "hold-saved": ("success", "The report setting is saved."),
    "colleague-invited": ("success", "Your colleague is asked; they can read the case now."),
    "colleague-withdrawn": ("success", "Your colleague can no longer read the case."),
    "colleague-answered": ("success", "Your answer is sent to the reviewing doctor."),
    "away-added": ("success", "No case will be offered to you on those days."),
    "away-removed": ("success", "The out-of-office days are removed."),
    "doctor-settings-saved": ("success", "The doctor's reviewing settings are saved."),
    "doctor-away-added": ("success", "No case will be offered to the doctor on those days."),
    "records-requested": (
        "success",
        "The request is sent: the patient is emailed and the case waits, its clock paused.",
    ),
    "request-closed": ("success", "The request is closed."),
    "question-asked": (
        "success",
        "Your question is sent: the patient is emailed that there is one, and the case waits "
        "for the answer with its clock paused.",
    ),
    "request-answered": (
        "success",
        "Thank you. We told the team; the time for your report runs again from today.",
    ),
    "material-recorded": ("success", "The arrival is recorded."),
    "material-returned": ("success", "The return is recorded."),
    "messages-saved": ("success", "Your message settings are saved."),
    "job-queued": ("success", "The job runs within a few seconds; reload to see how it went."),
    "fee-saved": ("success", "The fee schedule is saved. It applies to cases submitted from now."),
}
# Notices about one part of a page are shown at the top of that part (the section with this id),
# where the redirect takes the eye, instead of at the top of the page.
NOTICE_SECTIONS: dict[str, str] = {
    "payment-returned": "payment",
    "payment-failed": "payment",
    "payment-abandoned": "payment",
    "payment-offline": "payment",
    "records-uploaded": "records",
    "records-left-out": "records",
    "link-revoked": "links",
    "records-requested": "needs",
    "request-closed": "needs",
    "request-answered": "needs",
    "question-asked": "questions",
    "material-recorded": "materials",
    "material-returned": "materials",
}

# What a person's landing page (/dashboard) is called, by role (core.security's role names):
# the menu says the same as the page's heading.
HOME_TITLES = {
    "patient": "My cases",
    "doctor": "My queue",
    "coordinator": "Cases to triage",
    "admin": "Administration",
}
DATE_FORMAT = "%-d %b %Y"  # "2 Oct 2026": every date a page shows


def home_title(role: str) -> str:
    return HOME_TITLES.get(role, "My work")


def format_date(value: date | datetime | str | None, zone: ZoneInfo, weekday: bool = False) -> str:
    """A date as people read it: "2 Oct 2026" ("Fri 2 Oct 2026" with `weekday`). Takes a date,
    an aware datetime (shown in `zone`) or an ISO date string (a draft's entry); anything else
    is returned as it was typed."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError:
            return value
    if isinstance(value, datetime):
        value = value.astimezone(zone).date()
    return value.strftime(("%a " if weekday else "") + DATE_FORMAT)


def specialty_name(specialty: Callable[[str], Any] | None, slug: str) -> str:
    """The one name of a specialty everywhere ("Radiology second opinion"): the title its plugin
    gives it (`specialty` looks a slug up, e.g. PluginHost.specialty)."""
    found = specialty(slug) if specialty is not None else None
    return found.title if found else slug.replace("_", " ").capitalize()


def install_template_helpers(
    environment: Environment,
    settings: Settings,
    specialty: Callable[[str], Any] | None = None,
) -> None:
    """Filters and functions every template may use (the domains' own are added by
    core.app, which sits above them)."""
    zone = ZoneInfo(settings.time_zone)

    def localtime(value: datetime | None) -> str:
        # "2 Oct 2026 14:05" in the deployment's time zone (stored times are UTC).
        if value is None:
            return ""
        return value.astimezone(zone).strftime(f"{DATE_FORMAT} %H:%M")

    def day(value: date | datetime | str | None, weekday: bool = False) -> str:
        return format_date(value, zone, weekday)

    environment.filters["localtime"] = localtime
    environment.filters["day"] = day
    environment.globals["home_title"] = home_title
    environment.globals["specialty_name"] = lambda slug: specialty_name(specialty, slug)
    environment.globals["display"] = display_value
    environment.globals["group_indexes"] = lambda raw, base: group_indexes(
        MappingFormData(raw), base
    )
    environment.globals["today"] = lambda: date.today().isoformat()
    environment.globals["controlling_names"] = controlling_names
    environment.globals["condition_text"] = condition_text
    environment.globals["site"] = settings
    environment.globals["filesize"] = filesize


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Template:
    """Render a full page; adds the notice named in the query string, if any. A notice about
    one section (NOTICE_SECTIONS) carries its id: that section shows it, the page top does not."""
    key = request.query_params.get("notice", "")
    notice = NOTICES.get(key)
    if notice and "flash" not in context:
        context["flash"] = {
            "kind": notice[0],
            "text": notice[1],
            "section": NOTICE_SECTIONS.get(key, ""),
        }
    return Template(name, context=context, status_code=status_code)


def redirect(path: str, notice: str | None = None) -> Redirect:
    """A 303 to `path`; with a notice, to the section the notice belongs to unless `path`
    names a fragment already."""
    if notice:
        path, hash_mark, fragment = path.partition("#")  # the query goes before the fragment
        if not hash_mark and NOTICE_SECTIONS.get(notice):
            hash_mark, fragment = "#", NOTICE_SECTIONS[notice]
        path += ("&" if "?" in path else "?") + f"notice={notice}" + hash_mark + fragment
    return Redirect(path=path, status_code=303)


def safe_next(value: str | None, default: str = "/dashboard") -> str:
    """Only a path on this site: never `//evil.example` or `https://…` (open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: str(value) for key, value in form.items()}


def bounded_int(value: str | None, *, default: int, low: int, high: int) -> int:
    """A number from a query string, kept inside [low, high]: `?offset=9223372036854775808` or
    `?offset=abc` must not reach the database as it is (an overflow there is a 500)."""
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        return default
    return min(max(number, low), high)


# Lists a page at a time (keyset pagination) -----------------------------------------------------
#
# A list that grows with history (a patient's cases, a queue, the audit log) is shown a page at
# a time, in one fixed order that ends with a unique column (so rows with the same time keep
# one order). A page is found by the sort key of a row of the page before, never by an offset:
# `?after=<cursor>` is the page that follows that row in the order shown, `?before=<cursor>`
# the page that comes before it. A query per page, however long the list.
#
# A cursor is the row's key written as numbers ("<microseconds since 1970>.<id>", or a
# sequence number): opaque to people, and checked here. Anything else that arrives (malformed,
# out of range, unknown digits) is the first page. A cursor only positions a query that the
# service already limits to what the person may see: it can never widen it.

PAGE_SIZE = 25  # rows per page of a list of cases (a person's, a queue)

Key = tuple[Any, ...]
Row = TypeVar("Row")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LARGEST = {
    datetime: (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND,
    date: date.max.toordinal(),
    int: 2**31 - 1,  # ids and sequence numbers are Serial: 32 bits on PostgreSQL
}
_NUMBER = re.compile(r"[0-9]{1,19}")  # ASCII digits only: int() would read "١٢" too
MAX_CURSOR_CHARS = 80


def encode_cursor(key: Key) -> str:
    """A row's sort key as a cursor: aware datetimes as microseconds since 1970 (UTC), dates
    as their ordinal, integers as they are, joined with dots."""
    parts = []
    for value in key:
        if isinstance(value, datetime):
            parts.append((value - _EPOCH) // _MICROSECOND)
        elif isinstance(value, date):
            parts.append(value.toordinal())
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(value)
        else:
            raise TypeError(f"a cursor holds datetimes, dates and integers, not {value!r}")
    return ".".join(str(part) for part in parts)


def decode_cursor(text: str | None, kinds: tuple[type, ...]) -> Key | None:
    """The key a cursor of `encode_cursor` holds, read as `kinds` (datetime, date or int, in
    order); None for anything that is not such a cursor."""
    if not text or len(text) > MAX_CURSOR_CHARS:
        return None
    parts = text.split(".")
    if len(parts) != len(kinds):
        return None
    key: list[Any] = []
    for part, kind in zip(parts, kinds, strict=True):
        if not _NUMBER.fullmatch(part) or int(part) > _LARGEST[kind]:
            return None
        number = int(part)
        if kind is datetime:
            key.append(_EPOCH + number * _MICROSECOND)
        elif kind is date:
            if number < 1:
                return None
            key.append(date.fromordinal(number))
        else:
            key.append(number)
    return tuple(key)


@dataclass(frozen=True)
class PageRequest:
    """Which page of a list to show: the first, or the one after or before a row's key."""

    after: Key | None = None
    before: Key | None = None

    @property
    def first(self) -> bool:
        return self.after is None and self.before is None


def page_request(params: Mapping[str, Any], kinds: tuple[type, ...]) -> PageRequest:
    """The page a query string asks for (`after` wins over `before`; a bad cursor: the first)."""
    after = decode_cursor(_text(params.get("after")), kinds)
    if after is not None:
        return PageRequest(after=after)
    return PageRequest(before=decode_cursor(_text(params.get("before")), kinds))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# A list's query, called with keywords `limit`, `after` and `before`: at most `limit` rows in the
# list's order, the first ones after the row with key `after`, or the last ones before the row
# with key `before` (still in the list's order), or the first ones.
Fetch = Callable[..., Awaitable[list[Row]]]


@dataclass(frozen=True)
class Page(Generic[Row]):
    """One page of a list, and the cursors of the pages around it (None: there is none)."""

    rows: list[Row]
    previous: str | None = None  # for ?before=: the rows before this page
    next: str | None = None  # for ?after=: the rows after this page

    def link(self, path: str, params: Mapping[str, str], direction: str) -> str | None:
        """The link to the "previous" or "next" page, or to the "first" one (when this is not
        it), keeping `params` (the list's filters; empty values are left out)."""
        cursor = self.next if direction == "next" else self.previous
        if cursor is None:
            return None
        query = {name: value for name, value in params.items() if value}
        if direction != "first":
            query["after" if direction == "next" else "before"] = cursor
        return f"{path}?{urlencode(query)}" if query else path

    def links(self, path: str, params: Mapping[str, str]) -> dict[str, str | None]:
        """The page's links for a template: first_link, previous_link, next_link."""
        return {
            f"{direction}_link": self.link(path, params, direction)
            for direction in ("first", "previous", "next")
        }


async def paginate(
    fetch: Fetch[Row], wanted: PageRequest, key: Callable[[Row], Key], size: int = PAGE_SIZE
) -> Page[Row]:
    """The page `wanted` of the list `fetch` reads, `size` rows, in one query (two when the
    cursor points past either end of the list: then the first page is shown instead)."""
    if wanted.before is not None:
        rows = await fetch(limit=size + 1, after=None, before=wanted.before)
        if len(rows) > size:  # a full page, and more before it
            rows = rows[1:]
            return Page(
                rows, previous=encode_cursor(key(rows[0])), next=encode_cursor(key(rows[-1]))
            )
        wanted = PageRequest()  # back at the start: the first page, full
    rows = await fetch(limit=size + 1, after=wanted.after, before=None)
    if wanted.after is not None and not rows:  # past the end (or a made-up cursor)
        wanted = PageRequest()
        rows = await fetch(limit=size + 1, after=None, before=None)
    more, rows = len(rows) > size, rows[:size]
    return Page(
        rows,
        previous=encode_cursor(key(rows[0])) if wanted.after is not None else None,
        next=encode_cursor(key(rows[-1])) if more else None,
    )

"""Admin page `/admin/audit`: filter the audit log by date, user, action and patient.

The log names accounts by uid (it sits below accounts); this page turns the emails typed in the
filters into uids, and the uids it shows back into emails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get
from litestar.response import Template

from core.accounts import service as accounts
from core.audit import service
from core.ids import parse_uuid
from core.roles import ADMIN
from core.security import role_guard
from core.web import Page, PageRequest, page_request, paginate

PAGE_SIZE = 50
# A page's cursor is the sequence number of an event (?after=: the events older than it, the
# next page; ?before=: the newer ones). The old ?offset= is ignored: the first page.
SEQ_CURSOR = (int,)
FILTER_NAMES = ("from", "to", "email", "action", "subject")
ACTION_FILTER_RE = re.compile(r"^[a-z0-9_.]{1,64}$")
MAX_EMAIL_CHARS = 320


@dataclass
class Filters:
    """The filter form as typed (`values`), what it means (`query`), and what was wrong."""

    values: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    page: PageRequest = field(default_factory=PageRequest)


def parse_filters(params: Any) -> Filters:
    filters = Filters(values={name: (params.get(name) or "").strip() for name in FILTER_NAMES})
    values, query, errors = filters.values, filters.query, filters.errors
    for name, key in (("from", "date_from"), ("to", "date_to")):
        if values[name]:
            try:
                query[key] = date.fromisoformat(values[name])
            except ValueError:
                errors[name] = "Enter the date as year-month-day, for example 2026-10-02."
    if "date_from" in query and "date_to" in query and query["date_to"] < query["date_from"]:
        errors["to"] = "The end date must be on or after the start date."
    if values["email"]:
        if "@" not in values["email"] or len(values["email"]) > MAX_EMAIL_CHARS:
            errors["email"] = "Enter the person's full email address."
        query["actor_email"] = values["email"].lower()
    if values["action"]:
        if not ACTION_FILTER_RE.match(values["action"].lower()):
            errors["action"] = "Actions look like login.failure: letters, digits and dots."
        query["action"] = values["action"].lower()
    _parse_subject(values["subject"], query, errors)
    filters.page = page_request(params, SEQ_CURSOR)
    return filters


def _parse_subject(value: str, query: dict[str, Any], errors: dict[str, str]) -> None:
    if not value:
        return
    if "@" in value:
        query["subject_email"] = value.lower()
        return
    parsed = parse_uuid(value)
    if parsed is None:
        errors["subject"] = "Enter the patient's email address or their account id."
    else:
        query["subject_uid"] = str(parsed)


def format_local(at: datetime, zone: ZoneInfo) -> str:
    """e.g. "2 Oct 2026 14:05" in the deployment's time zone."""
    local = at.astimezone(zone)
    return f"{local.day} {local:%b %Y %H:%M}"


async def search_page(query: dict[str, Any], wanted: PageRequest) -> Page[service.AuditEntry]:
    """One page of the events the filters `query` find (emails already turned into uids)."""

    async def fetch(
        *, limit: int, after: tuple[int] | None, before: tuple[int] | None
    ) -> list[service.AuditEntry]:
        found = await service.search(
            **query,
            limit=limit,
            older_than=after[0] if after else None,
            newer_than=before[0] if before else None,
        )
        return found.entries

    return await paginate(fetch, wanted, lambda entry: (entry.seq,), PAGE_SIZE)


def _rows(page: Page[service.AuditEntry], zone: ZoneInfo) -> list[dict[str, Any]]:
    return [
        {
            "entry": entry,
            "at_local": format_local(entry.at, zone),
            "at_iso": service.format_chain_time(entry.at),
            "details": sorted(entry.details.items()),
        }
        for entry in page.rows
    ]


async def _with_uids(query: dict[str, Any]) -> dict[str, Any]:
    """The search's filters, with emails turned into the uids of their accounts."""
    query = dict(query)
    if "actor_email" in query:
        query["actor_uids"] = await accounts.uids_with_email(query.pop("actor_email"))
    if "subject_email" in query:
        query["subject_uids"] = await accounts.uids_with_email(query.pop("subject_email"))
    elif "subject_uid" in query:
        query["subject_uids"] = [query.pop("subject_uid")]
    return query


async def _record_view(request: Request, filters: Filters) -> None:
    # Reading the log is itself an event; the filter values may name people, so keep names only.
    user = request.scope.get("user")
    await service.record(
        "audit.view",
        actor=user,
        subject_uid=filters.query.get("subject_uid"),
        ip=request.client.host if request.client else None,
        details={"filters": [name for name in FILTER_NAMES if filters.values[name]]},
    )


class AuditController(Controller):
    path = "/admin/audit"
    guards = [role_guard(ADMIN)]

    @get("/", name="audit:index")
    async def index(self, request: Request) -> Template:
        settings = request.app.state.settings
        zone = ZoneInfo(settings.time_zone)
        filters = parse_filters(request.query_params)
        page, emails = None, {}
        if not filters.errors:
            page = await search_page(await _with_uids(filters.query), filters.page)
            emails = await accounts.emails_by_uid(
                uid for e in page.rows for uid in (e.actor_uid, e.subject_uid) if uid
            )
            await _record_view(request, filters)
        context = {
            "emails": emails,
            "values": filters.values,
            "errors": filters.errors,
            "page": page,
            "rows": _rows(page, zone) if page else [],
            "time_zone": settings.time_zone,
            # Newest first: the first page is the newest, the previous one newer, the next older.
            **(page or Page([])).links("/admin/audit", filters.values),
        }
        if request.headers.get("hx-request"):
            # htmx asks for the results only (filter form wired with hx-get later).
            return HTMXBlockTemplate(
                template_name="audit/index.html", block_name="results", context=context
            )
        return Template(template_name="audit/index.html", context=context)


ROUTES = [AuditController]

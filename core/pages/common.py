"""What the pages of this package share: finding the case a request names, reading forms."""

from __future__ import annotations

import functools
from typing import Any

from litestar import Request
from litestar.exceptions import NotFoundException

from core.cases import service as cases
from core.cases.tables import Case
from core.documents import service as documents
from core.reviews import urgent
from core.security import record_denied
from core.specialty import Specialty
from core.web import page_request, paginate

RECORD_LINES_PER_PAGE = 50

CONTROL_KEYS = {"_csrf_token", "action"}


async def form_lists(request: Request) -> dict[str, list[str]]:
    form = await request.form()
    return {
        key: [str(v) for v in form.getall(key)] for key in form.keys() if key not in CONTROL_KEYS
    }


def specialty_of(request: Request, slug: str) -> Specialty:
    specialty = request.app.state.plugins.specialty(slug)
    if specialty is None:  # its plugin was removed: the case can be seen, not edited
        raise NotFoundException()
    return specialty


async def own_case(request: Request, uid: str) -> Case:
    """The signed-in patient's own case, else 404 (audited as a denial)."""
    try:
        return await cases.get_own_case(request.user, uid)
    except cases.CaseNotFound:
        await record_denied(request, reason="not_owner_or_missing")
        raise NotFoundException() from None


async def records_page(request: Request, case: Case, path: str) -> dict[str, Any]:
    """A page of the case's record lines (`?after=` / `?before=` a line's cursor) for a case
    page at `path`: `documents` (the lines) and the links to the pages around it. A fixed
    number of queries, however many files the case holds."""
    fetch = functools.partial(documents.lead_documents, case)
    wanted = page_request(request.query_params, (int,))
    found = await paginate(fetch, wanted, documents.lead_key, size=RECORD_LINES_PER_PAGE)
    return {
        "documents": await documents.lines_led_by(case, found.rows),
        **{name: link for name, link in found.links(path, {}).items()},
    }


async def urgent_panel(case: Case, base: str, **flags: bool) -> dict[str, Any]:
    """What templates/reviews/_urgent.html needs: the case's urgency, where its forms post, and
    what the viewer may do (`can_mark`, `can_take`, `can_hold`)."""
    return {
        "urgency": await urgent.urgency_of(case),
        "base": base,
        "categories": urgent.CATEGORIES,
        "audiences": urgent.AUDIENCES,
        "methods": urgent.METHODS,
        **{name: flags.get(name, False) for name in ("can_mark", "can_take", "can_hold")},
    }

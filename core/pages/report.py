"""The report page and its PDF, at one address for everyone who may read it: the patient (once
told it is ready), coordinators and admins, and the doctor who signed it. Anyone else, and a
version that does not exist, gets 404 (audited as a denial). Every opening is audited."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response, Template

from core.cases import service as cases
from core.cases.tables import Case
from core.reports import service as reports
from core.reports import sharing
from core.reports.render import ReportView
from core.roles import PATIENT
from core.security import record_denied, signed_in
from core.web import client_ip, page


async def _readable(request: Request, uid: str, version: int | None) -> tuple[Case, object]:
    try:
        case = await cases.get_case(uid)
        return case, await reports.readable_version(case, request.user, version)
    except (cases.CaseNotFound, reports.ReportNotFound):
        await record_denied(request, reason="not_reader_or_missing")
        raise NotFoundException() from None


def document_context(request: Request, case: Case, view: ReportView) -> dict[str, Any]:
    """What templates/reports/document.html needs besides the page's own."""
    settings = request.app.state.settings
    return {
        "report": view,
        "specialty_template": request.app.state.plugins.specialty(case.specialty).report_template,
        "verify_url": f"{settings.base_url}/verify",
    }


def pdf_response(data: bytes, name: str) -> Response:
    """A signed PDF as issued, byte for byte (what /verify checks), never cached."""
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "content-disposition": f'attachment; filename="{name}"',
            "cache-control": "no-store",
        },
    )


class ReportController(Controller):
    path = "/cases/{uid:str}/report"
    guards = [signed_in]

    @get("/")
    async def current(self, request: Request, uid: FromPath[str]) -> Template:
        """The current version."""
        return await self._show(request, uid, None)

    @get("/versions/{version:int}")
    async def version(
        self, request: Request, uid: FromPath[str], version: FromPath[int]
    ) -> Template:
        """An earlier (or the current) version, marked superseded when a later one exists."""
        return await self._show(request, uid, version)

    async def _show(self, request: Request, uid: str, version: int | None) -> Template:
        case, line = await _readable(request, uid, version)
        state = await reports.state_of(case, request.user)
        view = await reports.view_of(case, line)
        await reports.record_read(case, line, request.user, "view", ip=client_ip(request))
        return page(
            request,
            "reports/page.html",
            case=case,
            state=state,
            line=line,
            **document_context(request, case, view),
            for_patient=request.user.role == PATIENT,
            **await sharing.share_panel(case, request.user),
        )

    @get("/versions/{version:int}/pdf")
    async def pdf(self, request: Request, uid: FromPath[str], version: FromPath[int]) -> Response:
        """The signed PDF of one version, as issued (byte for byte what /verify checks)."""
        case, line = await _readable(request, uid, version)
        data = await reports.pdf_of(case, line)
        await reports.record_read(case, line, request.user, "download", ip=client_ip(request))
        state = await reports.state_of(case, request.user)
        return pdf_response(data, reports.filename_of(state.number, line.version))


ROUTES = [ReportController]

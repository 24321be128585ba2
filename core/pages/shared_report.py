"""Sharing the report with the patient's own doctor (core/reports/sharing.py), over HTTP.

The owning patient makes and revokes links from the report page (anyone else: 404, audited).
The doctor opens `/shared/{token}` without an account: first the access code when the link has
one (a correct code is remembered in this browser's session, by the share's uid), then the
report, its signed PDF and, when the patient chose so, the case's records. Every link that does
not work (unknown, expired, revoked, locked) is the same 404 page; nothing of the case is shown
before the code. Responses carry `Referrer-Policy: no-referrer` and `Cache-Control: no-store`;
the token is never logged nor audited (the audit names the share's uid; routes are logged by
their template).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Stream

from core.cases import service as cases
from core.cases.tables import Case
from core.documents import service as documents
from core.documents.content import content_disposition
from core.documents.provider_routes import TOKEN_PAGE_HEADERS
from core.errors import InvalidInput
from core.pages.report import document_context, pdf_response
from core.reports import service as reports
from core.reports import sharing
from core.roles import PATIENT
from core.security import record_denied, signed_in
from core.web import client_ip, form_data, page

NO_STORE = {**TOKEN_PAGE_HEADERS, "cache-control": "no-store"}
SESSION_KEY = "report_shares"  # the uids of shares whose code this browser gave
REMEMBERED = 20  # shares remembered per session
RECORDS_LISTED = 500


def _private(response: Response) -> Response:
    for name, value in NO_STORE.items():
        response.headers[name] = value
    return response


# The patient: making and revoking links --------------------------------------------------


async def _own_case(request: Request, uid: str) -> Case:
    try:
        if request.user.role != PATIENT:
            raise cases.CaseNotFound
        return await cases.get_own_case(request.user, uid)
    except cases.CaseNotFound:
        await record_denied(request, reason="not_owner_or_missing")
        raise NotFoundException() from None


FORM_FIELDS = ("label", "days", "include_records", "with_code")


class ReportShareController(Controller):
    path = "/cases/{uid:str}/report/shares"
    guards = [signed_in]

    async def _page(self, request: Request, case: Case, status: int = 200, **extra: Any):
        form = {k: extra.pop(k) for k in ("share_values", "share_errors") if k in extra}
        response = page(
            request,
            "reports/share_created.html",
            status,
            case=case,
            **await sharing.share_panel(case, request.user, **form),
            **extra,
        )
        return _private(response)

    @post("/", status_code=200)
    async def create(self, request: Request, uid: FromPath[str]) -> Response:
        case = await _own_case(request, uid)
        data = await form_data(request)
        kept = {key: data.get(key, "") for key in FORM_FIELDS}
        try:
            share, token, code = await sharing.create(
                case, request.user, data, ip=client_ip(request)
            )
        except InvalidInput as invalid:
            return await self._page(
                request, case, 400, share_values=kept, share_errors=invalid.errors
            )
        except sharing.ShareRefused as refused:
            return await self._page(
                request,
                case,
                409,
                share_values=kept,
                flash={"kind": "error", "text": refused.message, "section": "share"},
            )
        return await self._page(
            request,
            case,
            new_share=share,
            new_url=sharing.share_url(request.app.state.settings.base_url, token),
            new_code=code,
        )

    @post("/{share:str}/revoke")
    async def revoke(self, request: Request, uid: FromPath[str], share: FromPath[str]) -> Redirect:
        case = await _own_case(request, uid)
        try:
            await sharing.revoke(request.user, case, share, ip=client_ip(request))
        except sharing.ShareNotFound:
            await record_denied(request, reason="not_owner_or_missing")
            raise NotFoundException() from None
        return Redirect(path=f"/cases/{case.uid}/report#share", status_code=303)


# The doctor: no account, only the link ---------------------------------------------------


def _invalid(request: Request) -> Response:
    """The one answer for every link that does not work, whatever the reason."""
    return _private(page(request, "reports/shared.html", 404, state="invalid"))


def _code_given(request: Request, shared: sharing.Shared) -> bool:
    if not shared.has_code:
        return True
    session = request.scope.get("session")
    remembered = session.get(SESSION_KEY, []) if isinstance(session, dict) else []
    return str(shared.share.uid) in remembered


def _remember(request: Request, shared: sharing.Shared) -> None:
    session = request.scope.get("session")
    session = dict(session) if isinstance(session, dict) else {}
    remembered = [u for u in session.get(SESSION_KEY, []) if u != str(shared.share.uid)]
    session[SESSION_KEY] = [*remembered, str(shared.share.uid)][-REMEMBERED:]
    request.set_session(session)


async def _opened(request: Request, token: str) -> sharing.Shared | None:
    """The link when it works and this browser gave its code (if it has one)."""
    shared = await sharing.open(token)
    if shared is None or not _code_given(request, shared):
        return None
    return shared


def _code_page(request: Request, token: str, status: int = 200, **extra: Any) -> Response:
    return _private(
        page(request, "reports/shared.html", status, state="code", token=token, **extra)
    )


async def _records(case: Case) -> list[documents.RecordLine]:
    leads = await documents.lead_documents(case, limit=RECORDS_LISTED)
    return await documents.lines_led_by(case, leads)


class SharedReportController(Controller):
    path = "/shared/{token:str}"

    @get("/")
    async def show(self, request: Request, token: FromPath[str]) -> Response:
        shared = await sharing.open(token)
        if shared is None:
            return _invalid(request)
        if not _code_given(request, shared):
            return _code_page(request, token)
        case, ip = shared.case, client_ip(request)
        view = await reports.view_of(case, shared.line)
        records = await _records(case) if shared.share.include_records else []
        await sharing.record_opening(shared.share, sharing.REPORT, ip)
        return _private(
            page(
                request,
                "reports/shared.html",
                state="report",
                token=token,
                share=shared.share,
                line=shared.line,
                number=shared.number,
                records=records,
                **document_context(request, case, view),
            )
        )

    @post("/code", status_code=200)
    async def code(self, request: Request, token: FromPath[str]) -> Response:
        shared = await sharing.open(token)
        if shared is None:
            return _invalid(request)
        if _code_given(request, shared):
            return _private(Redirect(path=f"/shared/{token}", status_code=303))
        data = await form_data(request)
        entered = (data.get("code") or "").strip()
        if not entered:
            return _code_page(request, token, 400, error="Enter the access code.")
        if not await sharing.check_code(shared.share, entered, ip=client_ip(request)):
            if sharing.tries_left(shared.share) == 0:
                return _invalid(request)
            return _code_page(
                request,
                token,
                400,
                error="That code is not right. Check it with the patient and try again.",
                tries_left=sharing.tries_left(shared.share),
            )
        _remember(request, shared)
        return _private(Redirect(path=f"/shared/{token}", status_code=303))

    @get("/pdf")
    async def pdf(self, request: Request, token: FromPath[str]) -> Response:
        shared = await _opened(request, token)
        if shared is None:
            return _invalid(request)
        data = await reports.pdf_of(shared.case, shared.line)
        await sharing.record_opening(shared.share, sharing.PDF, client_ip(request))
        return _private(pdf_response(data, reports.filename_of(shared.number, shared.line.version)))

    @get("/documents/{doc:str}")
    async def document(self, request: Request, token: FromPath[str], doc: FromPath[str]) -> Any:
        shared = await _opened(request, token)
        if shared is None or not shared.share.include_records:
            return _invalid(request)
        try:
            document = await documents.get_document(shared.case, doc)
        except documents.DocumentNotFound:
            return _invalid(request)
        await sharing.record_opening(
            shared.share, sharing.DOCUMENT, client_ip(request), document=str(document.uid)
        )
        return _private(
            Stream(
                documents.plaintext(request.app.state.records, document),
                media_type="application/octet-stream",
                headers={
                    "content-disposition": content_disposition(document.display_name),
                    "content-length": str(document.size),
                    "x-content-type-options": "nosniff",
                },
            )
        )


ROUTES = [ReportShareController, SharedReportController]

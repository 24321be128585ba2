"""Provider upload links over HTTP. Thin: the rules live in core.documents.links.

The patient makes and revokes links from their case page. The provider (no account) opens
`/upload/{token}`, which names only the case reference, and sends files through the same
streaming multipart path as the patient's own upload: excluded from Litestar's CSRF middleware,
the token checked from the `x-csrftoken` header or the form's first field before any file byte
is read. Every refusal of a link (unknown, expired, revoked, used up, case closed) is the same
404 page. Pages behind a link carry `Referrer-Policy: no-referrer`, and the token is never
logged nor written to the audit log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Response

from core import context
from core.cases import service as cases
from core.cases.tables import Case
from core.documents import kinds, links, resumable
from core.documents import service as documents
from core.documents.tables import ProviderLink, UploadSession
from core.documents.upload_stream import (
    Received,
    answer_status,
    csrf_matches,
    outcome_data,
    receive_files,
    script_client,
    summary,
)
from core.roles import PATIENT
from core.security import record_denied, role_guard
from core.specialty import DocumentKind
from core.web import client_ip, form_data, page

# On every response that has a token in its URL or body.
TOKEN_PAGE_HEADERS = {"referrer-policy": "no-referrer", "x-robots-tag": "noindex, nofollow"}
INVALID_TEXT = "This upload link is no longer valid. Please ask the patient for a new one."


def _with_headers(response: Response) -> Response:
    for name, value in TOKEN_PAGE_HEADERS.items():
        response.headers[name] = value
    return response


# The patient: making and revoking links ---------------------------------------------------------


async def _own_case(request: Request, uid: str) -> Case:
    try:
        return await cases.get_own_case(request.user, uid)
    except cases.CaseNotFound:
        await record_denied(request, reason="not_owner_or_missing")
        raise NotFoundException() from None


class ProviderLinkController(Controller):
    path = "/cases/{uid:str}/links"
    guards = [role_guard(PATIENT)]

    async def _links_page(
        self, request: Request, case: Case, status: int = 200, **context: Any
    ) -> Response:
        context.setdefault("link_values", {})
        context.setdefault("link_errors", {})
        response = page(
            request,
            "documents/links.html",
            status,
            case=case,
            links=await links.links_of(case),
            **context,
        )
        return _with_headers(response)

    @post("/", status_code=200)
    async def create(self, request: Request, uid: FromPath[str]) -> Response:
        case = await _own_case(request, uid)
        data = await form_data(request)
        values, errors = links.check_form(data)
        if errors:
            kept = {key: data.get(key, "") for key in ("note", "days_valid", "max_uses")}
            return await self._links_page(request, case, 400, link_values=kept, link_errors=errors)
        try:
            link, token = await links.create_link(
                request.user,
                case,
                note=str(values["note"]),
                days_valid=int(values["days_valid"]),  # type: ignore[call-overload]
                max_uses=int(values["max_uses"]),  # type: ignore[call-overload]
                ip=client_ip(request),
            )
        except links.LinkRefused as refused:
            return await self._links_page(
                request,
                case,
                409,
                link_values=data,
                flash={"kind": "error", "text": refused.message},
            )
        return await self._links_page(
            request,
            case,
            new_link=link,
            new_url=links.link_url(request.app.state.settings.base_url, token),
        )

    @post("/{link:str}/revoke")
    async def revoke(self, request: Request, uid: FromPath[str], link: FromPath[str]) -> Redirect:
        case = await _own_case(request, uid)
        try:
            await links.revoke(request.user, case, link, ip=client_ip(request))
        except links.LinkNotFound:
            await record_denied(request, reason="not_owner_or_missing")
            raise NotFoundException() from None
        return Redirect(path=f"/cases/{case.uid}?notice=link-revoked#links", status_code=303)


# The provider: no account, only the link ---------------------------------------------------------


def _invalid(request: Request) -> Response:
    """The one answer for every link that does not work, whatever the reason."""
    if script_client(request):
        response = Response(INVALID_TEXT, status_code=404, media_type="text/plain")
    else:
        response = page(request, "documents/provider_upload.html", 404, state="invalid")
    return _with_headers(response)


def _link_context(link: ProviderLink, case: Case, token: str) -> dict[str, Any]:
    specialty = context.plugins().specialty(case.specialty)
    return {
        "reference": case.reference,
        "accepted": kinds.kinds_text(specialty.accepted_kinds if specialty else DocumentKind.ALL),
        "expires_at": link.expires_at,
        "remaining": max(link.max_uses - link.uses, 0),
        "action": f"/upload/{token}",
    }


def _provider_page(
    request: Request,
    link: ProviderLink,
    case: Case,
    token: str,
    status: int = 200,
    **context: Any,
) -> Response:
    response = page(
        request,
        "documents/provider_upload.html",
        status,
        state=context.pop("state", "form"),
        **_link_context(link, case, token),
        **context,
    )
    return _with_headers(response)


@get("/upload/{token:str}")
async def provider_form(request: Request, token: FromPath[str]) -> Response:
    found = await links.resolve(token)
    if found is None:
        return _invalid(request)
    link, case = found
    return _provider_page(request, link, case, token)


@post(
    "/upload/{token:str}",
    status_code=200,
    opt={"exclude_from_csrf": True},
    request_max_body_size=None,
)
async def provider_upload(request: Request, token: FromPath[str]) -> Response:
    records: documents.Records = request.app.state.records
    found = await links.resolve(token)
    # A link whose last use a large file took (in pieces) still answers the summary of that
    # upload (upload.js names the finished pieced uploads); it takes no more files.
    used_up = found is None
    if used_up:
        found = await links.resolve(token, uses_left=False)
    if found is None:
        return _invalid(request)
    link, case = found
    ip = client_ip(request)
    specialty = request.app.state.plugins.specialty(case.specialty)
    received, used = Received(), False
    room: documents.Room | None = None

    async def take_a_use() -> None:  # one use per upload, taken before its first byte is stored
        nonlocal used
        if links.continues(link, received.group):  # a later batch of an upload that took it
            return
        if used_up or not await links.use(link, ip=ip):
            raise _LinkGone
        used = True

    async def store(filename: str, chunks: AsyncIterator[bytes], _: str | None) -> documents.Stored:
        nonlocal room
        if room is None:
            room = await documents.room_for(records, case, None)
        return await documents.store_file(
            records,
            case,
            filename=filename,
            chunks=chunks,
            uploader=None,
            source="provider",
            provider_link_id=link.id,
            plugins=request.app.state.plugins,
            specialty=specialty,
            ip=ip,
            room=room,
        )

    try:
        await receive_files(request, received, store=store, before_first_file=take_a_use)
    except _LinkGone:
        return _invalid(request)
    except BaseException:
        if used and not received.stored:
            await links.release(link, ip=ip)
        raise
    if used and not received.stored:  # nothing of it was kept: the provider may try again
        await links.release(link, ip=ip)
    finished = await resumable.finished_documents(case, received.finished, provider_link_id=link.id)
    finished += await documents.documents_named(case, received.earlier, provider_link_id=link.id)
    if not received.files and not finished and not received.stopped:
        if used_up:
            return _invalid(request)
        message = "Please choose a file to send."
        if script_client(request):
            return _with_headers(Response(message, status_code=400, media_type="text/plain"))
        return _provider_page(request, link, case, token, 400, error=message)
    result = summary(received, finished)
    status = answer_status(received, result)
    # Later batches of this upload name the group: they take no use of their own.
    group = links.group_token(link) if used or links.continues(link, received.group) else ""
    if script_client(request):  # upload.js puts this in place of the form
        return _with_headers(
            HTMXBlockTemplate(
                template_name="documents/provider_upload.html",
                block_name="done",
                status_code=status,
                context={
                    **_link_context(link, case, token),
                    "result": result,
                    "outcome": outcome_data(received, group=group),
                },
            )
        )
    if not (result.files or result.already):  # nothing is in: the form again, with why
        return _provider_page(request, link, case, token, status, refused=result)
    return _provider_page(request, link, case, token, status, state="done", result=result)


# Resumable uploads behind a link (see core/documents/resumable.py and static/upload.js): the
# same protocol as the patient's, each large file taking one use of the link when it starts.


async def _live_link(token: str) -> tuple[ProviderLink, Case]:
    """A link for going on with an upload it started (which took its use already)."""
    found = await links.resolve(token, uses_left=False)
    if found is None:
        raise _LinkGone
    return found


class _LinkGone(Exception):
    pass


async def _link_session(case: Case, link: ProviderLink, upload: str) -> UploadSession:
    try:
        return await resumable.get_session(case, upload, provider_link_id=link.id)
    except resumable.SessionNotFound:
        raise _LinkGone from None


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return _with_headers(Response(data, status_code=status))


def _refused(refused: documents.UploadRefused) -> Response:
    return _with_headers(
        Response(refused.message, status_code=refused.status, media_type="text/plain")
    )


@post("/upload/{token:str}/uploads", status_code=201)
async def provider_start(request: Request, token: FromPath[str]) -> Response:
    try:
        link, case = await _live_link(token)
    except _LinkGone:
        return _invalid(request)
    data = await form_data(request)
    try:
        size = int(data.get("size", ""))
    except ValueError:
        return _refused(
            documents.UploadRefused(status=400, message="Please choose a file to send.")
        )
    ip = client_ip(request)
    if not await links.use(link, ip=ip):
        return _invalid(request)
    try:
        session = await resumable.start(
            request.app.state.records,
            case,
            filename=data.get("filename", ""),
            size=size,
            uploader=None,
            source="provider",
            provider_link_id=link.id,
        )
    except documents.UploadRefused as refused:
        await links.release(link, ip=ip)
        return _refused(refused)
    return _json((await resumable.progress(session)).as_json(), 201)


@get("/upload/{token:str}/uploads/{upload:str}")
async def provider_status(
    request: Request, token: FromPath[str], upload: FromPath[str]
) -> Response:
    try:
        link, case = await _live_link(token)
        session = await _link_session(case, link, upload)
    except _LinkGone:
        return _invalid(request)
    return _json((await resumable.progress(session)).as_json())


@put(
    "/upload/{token:str}/uploads/{upload:str}/chunks/{number:int}",
    opt={"exclude_from_csrf": True},
    request_max_body_size=None,
)
async def provider_chunk(
    request: Request, token: FromPath[str], upload: FromPath[str], number: FromPath[int]
) -> Response:
    if not csrf_matches(request, request.headers.get("x-csrftoken", "")):
        raise PermissionDeniedException("CSRF token verification failed")
    try:
        link, case = await _live_link(token)
        session = await _link_session(case, link, upload)
    except _LinkGone:
        return _invalid(request)
    if int(request.headers.get("content-length") or 0) > session.chunk_size:
        return _refused(
            documents.UploadRefused(status=413, message="This piece of the file is too large.")
        )
    ip = client_ip(request)
    try:
        state = await resumable.put_chunk(
            request.app.state.records,
            session,
            number,
            request.stream(),
            case=case,
            uploader=None,
            plugins=request.app.state.plugins,
            specialty=request.app.state.plugins.specialty(case.specialty),
            ip=ip,
        )
    except resumable.OutOfOrder:
        state = await resumable.progress(await _link_session(case, link, upload))
        return _json(state.as_json(), 409)
    except documents.UploadRefused as refused:
        if (await _link_session(case, link, upload)).status == resumable.FAILED:
            await links.release(link, ip=ip)  # nothing of it was kept: the provider may retry
        return _refused(refused)
    return _json(state.as_json())


@delete("/upload/{token:str}/uploads/{upload:str}", status_code=204)
async def provider_cancel(request: Request, token: FromPath[str], upload: FromPath[str]) -> None:
    try:
        link, case = await _live_link(token)
        session = await _link_session(case, link, upload)
    except _LinkGone:
        raise NotFoundException() from None
    unfinished = session.status == resumable.OPEN  # a failed one gave its use back already
    await resumable.cancel(request.app.state.records, session)
    if unfinished:
        await links.release(link, ip=client_ip(request))


ROUTES = [
    ProviderLinkController,
    provider_form,
    provider_upload,
    provider_start,
    provider_status,
    provider_chunk,
    provider_cancel,
]

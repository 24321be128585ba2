"""Uploading and downloading records. Thin: sealing, limits and access rules live in service.

The upload route reads the raw request stream and parses the multipart body itself, so file
bytes go straight into the sealer: Litestar's UploadFile would spool parts over 1 MiB to a
plaintext temp file. It is excluded from Litestar's CSRF middleware (which would parse the whole
body first) and checks the token itself: from the `x-csrftoken` header (htmx, upload.js), or from
the form's first field, before any file byte is accepted (a plain form without JavaScript).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from hashlib import sha256
from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Stream, Template
from multipart import MultipartSegment, ParserError, PushMultipartParser, parse_options_header

from core.cases import service as cases
from core.cases.tables import Case
from core.documents import resumable
from core.documents import service as documents
from core.documents.content import content_disposition
from core.documents.tables import Document, UploadSession
from core.errors import ShownError
from core.security import PATIENT, SANDBOX_CSP, record_denied, role_guard, signed_in
from core.web import client_ip, form_data, page, redirect

MAX_FILES_PER_REQUEST = 50
# upload.js sends large files in pieces first, then the rest in one request that names the
# finished pieced uploads ("done_uploads", comma-separated), so its answer sums up every file.
DONE_UPLOADS_FIELD = "done_uploads"
MAX_DONE_UPLOADS_CHARS = 40_000


async def done_uploads(form: MultipartStream) -> list[str]:
    text = await form.text(MAX_DONE_UPLOADS_CHARS)
    return [uid.strip() for uid in text.split(",") if uid.strip()]


def script_client(request: Request) -> bool:
    """upload.js (or htmx) sent this: it gets a fragment, not a page or a redirect."""
    return bool(request.headers.get("hx-request") or request.headers.get("x-upload-client"))


def csrf_matches(request: Request, token: str) -> bool:
    """The same check Litestar's CSRF middleware makes: both tokens carry a valid HMAC of the
    same secret part (double-submit cookie, signed with the app's CSRF key)."""
    config = request.app.csrf_config
    cookie = request.cookies.get(config.cookie_name) if config else None
    if not config or not cookie or not token:
        return False

    def secret_part(value: str) -> str | None:
        body, mac = value[:64], value[64:]
        expected = hmac.new(config.secret.encode(), body.encode(), sha256).hexdigest()
        return body if hmac.compare_digest(mac, expected) else None

    mine, theirs = secret_part(token), secret_part(cookie)
    return mine is not None and theirs is not None and hmac.compare_digest(mine, theirs)


class MultipartStream:
    """Parts of a multipart body, parsed as it arrives (bounded memory, nothing on disk)."""

    def __init__(self, request: Request) -> None:
        _, options = parse_options_header(request.headers.get("content-type", ""))
        if "boundary" not in options:
            raise ShownError(detail="Please choose a file and send the form again.")
        self._parser = PushMultipartParser(
            options["boundary"], max_segment_count=MAX_FILES_PER_REQUEST + 5
        )
        self._events = self._parse(request)
        self._in_body = False

    async def _parse(self, request: Request) -> AsyncIterator[object]:
        try:
            async for chunk in request.stream():
                if chunk:
                    for event in self._parser.parse(chunk):
                        yield event
            for event in self._parser.parse(b""):
                yield event
        except ParserError:
            raise ShownError(
                detail="The upload was cut short or malformed. Please try again."
            ) from None

    async def next_part(self) -> MultipartSegment | None:
        if self._in_body:
            async for _ in self.body():
                pass
        async for event in self._events:
            if isinstance(event, MultipartSegment):
                self._in_body = True
                return event
        return None

    async def body(self) -> AsyncIterator[bytes]:
        async for event in self._events:
            if event is None:
                self._in_body = False
                return
            yield event  # type: ignore[misc]

    async def text(self, limit: int = 4096) -> str:
        data = bytearray()
        async for chunk in self.body():
            data += chunk
            if len(data) > limit:
                raise ShownError(detail="A form field was too long.")
        return data.decode("utf-8", "replace")


async def _readable_case(request: Request, uid: str) -> Case:
    try:
        case = await cases.get_case(uid)
    except cases.CaseNotFound:
        case = None
    if case is None or not documents.may_read(request.user, case):
        await record_denied(request, reason="not_owner_or_missing")
        raise NotFoundException()
    return case


class DocumentController(Controller):
    path = "/cases/{uid:str}/documents"
    guards = [signed_in]

    @post("/", opt={"exclude_from_csrf": True}, request_max_body_size=None)
    async def upload(
        self, request: Request, uid: FromPath[str]
    ) -> Response | Redirect | HTMXBlockTemplate:
        records: documents.Records = request.app.state.records
        header_token = request.headers.get("x-csrftoken", "")
        if header_token and not csrf_matches(request, header_token):
            raise PermissionDeniedException("CSRF token verification failed")
        case = await _addable_case(request, uid)
        declared = int(request.headers.get("content-length") or 0)
        if declared > records.settings.max_file_bytes * MAX_FILES_PER_REQUEST:
            raise documents.UploadRefused(413, "This upload is too large.")
        form = MultipartStream(request)
        checked = bool(header_token)
        checklist_item, finished = None, []
        stored: list[Document] = []
        specialty = request.app.state.plugins.specialty(case.specialty)
        while (part := await form.next_part()) is not None:
            if part.name == "_csrf_token":
                checked = csrf_matches(request, await form.text())
            if not checked:  # no file byte is read before the token is verified
                raise PermissionDeniedException("CSRF token verification failed")
            if part.name == "checklist_item":
                value = (await form.text(100)).strip()
                keys = {d.key for d in specialty.required_documents} if specialty else set()
                checklist_item = value if value in keys else None
            elif part.name == DONE_UPLOADS_FIELD:
                finished = await done_uploads(form)
            elif part.name == "file" and part.filename:
                doc = await documents.store_upload(
                    records,
                    case,
                    filename=part.filename,
                    chunks=form.body(),
                    uploader=request.user,
                    checklist_item=checklist_item,
                    plugins=request.app.state.plugins,
                    specialty=specialty,
                    ip=client_ip(request),
                )
                stored.append(doc)
        stored += await resumable.finished_documents(case, finished, uploader=request.user)
        if not stored:
            raise ShownError(detail="Please choose a file to upload.")
        result = documents.upload_result(stored)
        notice = "records-left-out" if result.left_out else "records-uploaded"
        if script_client(request):
            return HTMXBlockTemplate(
                template_name="cases/case.html",
                block_name="upload_result",
                context={
                    "case": case,
                    "result": result,
                    "next_url": f"/cases/{case.uid}?notice={notice}#records",
                },
            )
        return redirect(f"/cases/{case.uid}", notice)

    @get("/{doc:str}")
    async def download(self, request: Request, uid: FromPath[str], doc: FromPath[str]) -> Stream:
        records: documents.Records = request.app.state.records
        case = await _readable_case(request, uid)
        try:
            document: Document = await documents.get_document(case, doc)
        except documents.DocumentNotFound:
            raise NotFoundException() from None
        await documents.record_access(
            request.user, case, document, "download", ip=client_ip(request)
        )
        return Stream(
            documents.plaintext(records, document),
            media_type="application/octet-stream",
            headers={
                "content-disposition": content_disposition(document.display_name),
                "content-length": str(document.size),
                "x-content-type-options": "nosniff",
            },
        )

    # Previews. The page is ours, under the unchanged page CSP (it frames nothing): images show
    # by <img>; a PDF is drawn into canvases by the vendored pdf.js (static/preview.js), which
    # fetches the bytes. Why not the browser's own PDF viewer in a frame: measured in Debian
    # Chromium 156 (headless and headed), it shows a PDF even when the response carries
    # `sandbox`, i.e. it does not apply that policy to its viewer, and it refuses a frame with
    # the sandbox attribute; WebKit is reported to turn sandboxed PDFs into downloads, and phone
    # browsers don't show PDFs in frames. Fetched bytes keep the sandbox in every browser.

    @get("/{doc:str}/view")
    async def view(self, request: Request, uid: FromPath[str], doc: FromPath[str]) -> Template:
        """Our page around a record: its name, Download, and the content when a browser can
        show it (415 with only the Download otherwise). Reads no content, so writes no audit row:
        the bytes it shows are audited by `preview`."""
        case = await _readable_case(request, uid)
        document = await _document(case, doc)
        shown = documents.previewable(document)
        back = f"/cases/{case.uid}" if request.user.role == PATIENT else "/dashboard"
        return page(
            request,
            "documents/view.html",
            status_code=200 if shown else 415,
            case=case,
            document=document,
            shown=shown,
            back=back,
        )

    @get("/{doc:str}/preview")
    async def preview(self, request: Request, uid: FromPath[str], doc: FromPath[str]) -> Stream:
        """The record's bytes for showing in the page: the sniffed type, inline, sandboxed."""
        records: documents.Records = request.app.state.records
        case = await _readable_case(request, uid)
        document = await _document(case, doc)
        if not documents.previewable(document):
            raise ShownError(
                status_code=415, detail="This file cannot be shown in the browser. Download it."
            )
        await documents.record_access(
            request.user, case, document, "preview", ip=client_ip(request)
        )
        return Stream(
            documents.plaintext(records, document),
            media_type=document.media_type,  # sniffed at upload, never from the name
            headers={
                "content-disposition": content_disposition(document.display_name, inline=True),
                "content-length": str(document.size),
                "x-content-type-options": "nosniff",
                "content-security-policy": SANDBOX_CSP,
                "cross-origin-resource-policy": "same-origin",
            },
        )


class UploadSessionController(Controller):
    """Resumable uploads (core/documents/resumable.py) for static/upload.js: declare a file,
    PUT its chunks in order, ask where it stands after a dropped connection, or cancel. Small
    JSON answers for the script; refusals are plain sentences, as for the one-request upload.
    Without JavaScript the form posts to `DocumentController.upload` instead."""

    path = "/cases/{uid:str}/uploads"
    guards = [signed_in]

    @post("/", status_code=201)
    async def start(self, request: Request, uid: FromPath[str]) -> dict[str, Any]:
        case = await _addable_case(request, uid)
        data = await form_data(request)
        try:
            size = int(data.get("size", ""))
        except ValueError:
            raise ShownError(detail="Please choose a file to upload.") from None
        specialty = request.app.state.plugins.specialty(case.specialty)
        keys = {d.key for d in specialty.required_documents} if specialty else set()
        item = data.get("checklist_item", "").strip()
        session = await resumable.start(
            request.app.state.records,
            case,
            filename=data.get("filename", ""),
            size=size,
            uploader=request.user,
            checklist_item=item if item in keys else None,
        )
        return (await resumable.progress(session)).as_json()

    @get("/{upload:str}")
    async def status(
        self, request: Request, uid: FromPath[str], upload: FromPath[str]
    ) -> dict[str, Any]:
        case = await _addable_case(request, uid)
        return (await resumable.progress(await _session(case, upload))).as_json()

    @put(
        "/{upload:str}/chunks/{number:int}",
        opt={"exclude_from_csrf": True},
        request_max_body_size=None,
    )
    async def chunk(
        self, request: Request, uid: FromPath[str], upload: FromPath[str], number: FromPath[int]
    ) -> Response[dict[str, Any]]:
        # Only a script sends chunks, and it always sends the header: checked before any byte.
        if not csrf_matches(request, request.headers.get("x-csrftoken", "")):
            raise PermissionDeniedException("CSRF token verification failed")
        case = await _addable_case(request, uid)
        session = await _session(case, upload)
        if int(request.headers.get("content-length") or 0) > session.chunk_size:
            raise documents.UploadRefused(413, "This piece of the file is too large.")
        try:
            state = await resumable.put_chunk(
                request.app.state.records,
                session,
                number,
                request.stream(),
                case=case,
                uploader=request.user,
                plugins=request.app.state.plugins,
                specialty=request.app.state.plugins.specialty(case.specialty),
                ip=client_ip(request),
            )
        except resumable.OutOfOrder:
            # Says where to go on from, e.g. after the answer to an earlier chunk was lost.
            state = await resumable.progress(await _session(case, upload))
            return Response(state.as_json(), status_code=409)
        return Response(state.as_json())

    @delete("/{upload:str}", status_code=204)
    async def cancel(self, request: Request, uid: FromPath[str], upload: FromPath[str]) -> None:
        case = await _addable_case(request, uid)
        await resumable.cancel(request.app.state.records, await _session(case, upload))


async def _addable_case(request: Request, uid: str) -> Case:
    case = await _readable_case(request, uid)
    if not documents.may_add_records(request.user, case):
        raise ShownError(status_code=409, detail="Records can no longer be added to this case.")
    return case


async def _session(case: Case, upload: str) -> UploadSession:
    try:
        return await resumable.get_session(case, upload)
    except resumable.SessionNotFound:
        raise NotFoundException() from None


async def _document(case: Case, doc: str) -> Document:
    try:
        return await documents.get_document(case, doc)
    except documents.DocumentNotFound:
        raise NotFoundException() from None


@get("/cases/{uid:str}/access", guards=[role_guard(PATIENT)])
async def who_opened(request: Request, uid: FromPath[str]) -> Template:
    """The patient's "who opened my records" page."""
    try:
        case = await cases.get_own_case(request.user, uid)
    except cases.CaseNotFound:
        await record_denied(request, reason="not_owner_or_missing")
        raise NotFoundException() from None
    lines = await documents.record_accesses(case, request.user)
    return page(request, "documents/access.html", case=case, lines=lines)


ROUTES = [DocumentController, UploadSessionController, who_opened]

"""Uploading and downloading records. Thin: sealing, limits and access rules live in service.

The upload form is read as it streams in (core/documents/upload_stream.py: no temp files, the
CSRF token checked before any file byte).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, delete, get, post, put
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Stream, Template

from core.cases import service as cases
from core.cases.tables import Case
from core.documents import resumable
from core.documents import service as documents
from core.documents.content import content_disposition
from core.documents.tables import Document, UploadSession
from core.documents.upload_stream import (
    Received,
    answer_status,
    csrf_matches,
    outcome_data,
    receive_files,
    script_client,
    summary,
)
from core.error_pages import ShownError
from core.roles import PATIENT
from core.security import SANDBOX_CSP, record_denied, role_guard, signed_in
from core.web import client_ip, form_data, page, redirect


async def _readable_case(request: Request, uid: str) -> Case:
    try:
        case = await cases.get_case(uid)
    except cases.CaseNotFound:
        case = None
    if case is None or not await documents.may_read(request.user, case):
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
        """A form of files (a plain form, or one batch of upload.js): each stored, found there
        already, or refused with a reason, the others going on. upload.js gets the case page's
        result block (with each file's outcome); a plain form is sent back to the case page, or
        shown what was not stored."""
        records: documents.Records = request.app.state.records
        case = await _addable_case(request, uid)
        specialty = request.app.state.plugins.specialty(case.specialty)
        received = Received()
        room: documents.Room | None = None

        async def store(
            filename: str, chunks: AsyncIterator[bytes], item: str | None
        ) -> documents.Stored:
            nonlocal room
            if room is None:  # one query for the whole form; each file keeps it up to date
                room = await documents.room_for(records, case, request.user)
            return await documents.store_file(
                records,
                case,
                filename=filename,
                chunks=chunks,
                uploader=request.user,
                checklist_item=item,
                plugins=request.app.state.plugins,
                specialty=specialty,
                ip=client_ip(request),
                room=room,
            )

        keys = {d.key for d in specialty.required_documents} if specialty else set()
        await receive_files(request, received, store=store, checklist_keys=keys)
        finished = await resumable.finished_documents(
            case, received.finished, uploader=request.user
        )
        finished += await documents.documents_named(case, received.earlier)
        if not received.files and not finished and not received.stopped:
            raise ShownError(detail="Please choose a file to upload.")
        result = summary(received, finished)
        status = answer_status(received, result)
        notice = "records-left-out" if result.left_out else "records-uploaded"
        next_url = f"/cases/{case.uid}?notice={notice}#records"
        if script_client(request):
            return HTMXBlockTemplate(
                template_name="cases/case.html",
                block_name="upload_result",
                status_code=status,
                context={
                    "case": case,
                    "result": result,
                    "outcome": outcome_data(received),
                    "next_url": next_url,
                },
            )
        if not (result.refused or result.already or result.stopped):  # at most a ZIP's notes
            return redirect(f"/cases/{case.uid}", notice)
        return page(
            request,
            "documents/upload_result.html",
            status_code=status,
            case=case,
            result=result,
            back=f"/cases/{case.uid}#records",
        )

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

    @get("/{doc:str}/study")
    async def download_study(
        self, request: Request, uid: FromPath[str], doc: FromPath[str]
    ) -> Stream:
        """The whole imaging study `doc` belongs to, as one ZIP (core/documents/studies.py):
        the download's reader rule, one audit row for the study."""
        case = await _readable_case(request, uid)
        study = await documents.study_of(case, await _document(case, doc))
        if study is None:  # not a DICOM file of a study
            raise NotFoundException()
        await documents.record_access(
            request.user,
            case,
            study.lead,
            "download_study",
            ip=client_ip(request),
            details={"files": len(study.entries)},
        )
        return Stream(
            documents.study_zip(request.app.state.records, study),
            media_type="application/zip",
            headers={
                "content-disposition": content_disposition(
                    f"{case.reference}-study-{study.number}.zip"
                ),
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
            raise documents.UploadRefused(
                status=413, message="This piece of the file is too large."
            )
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

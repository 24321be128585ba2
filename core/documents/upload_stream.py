"""Files arriving in a multipart form, read from the raw request stream as they come.

Both upload forms (the patient's, core/documents/routes.py; the doctor's office's, through a
link, core/documents/provider_routes.py) go through `receive_files`: file bytes go straight into
the sealer, because Litestar's UploadFile would spool parts over 1 MiB to a plaintext temp file.
The routes are excluded from Litestar's CSRF middleware (which would parse the whole body first);
the token is checked here, from the `x-csrftoken` header (htmx, upload.js) or from the form's
first field, before any file byte is accepted (a plain form without JavaScript).

Every file gets an outcome: stored, already there (the same content), or refused with a
sentence — a refused file does not stop the others. What stops the rest of a form is said in a
sentence too, with a 4xx status, and what was stored before it stays stored and is listed: a
body that is cut short or malformed, a field too long, more parts than any form of ours has.
Past `MAX_FILES_PER_REQUEST` files the rest of the body is read and dropped (so the browser
gets the answer rather than a broken connection) and the files are counted, not stored.
upload.js sends a folder in batches far below that (static/upload.js, BATCH_FILES).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from hashlib import sha256

from litestar import Request
from litestar.exceptions import PermissionDeniedException
from multipart import (
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
    parse_options_header,
)

from core.cases.service import files_text
from core.documents import service as documents
from core.documents.archive import is_junk
from core.documents.content import display_name
from core.documents.tables import Document
from core.error_pages import ShownError

# The most files one form stores: a plain form (no JavaScript) with a whole CD still works.
MAX_FILES_PER_REQUEST = 1000
# Parts the parser reads at all (files past the maximum are read and dropped, and counted).
MAX_PARTS = 20 * MAX_FILES_PER_REQUEST
# upload.js sends large files in pieces first and the rest in batches; the last request names
# the finished pieced uploads ("done_uploads") and the documents the earlier batches stored
# ("done_documents"), comma-separated, and how many they found there already ("done_already"),
# so its answer sums up every file.
DONE_UPLOADS_FIELD = "done_uploads"
DONE_DOCUMENTS_FIELD = "done_documents"
DONE_ALREADY_FIELD = "done_already"  # how many files earlier batches found there already
MAX_DONE_CHARS = 40 * 20_000  # uids of 36 characters and a comma: 20,000 of them
# Later batches of one upload through a doctor's link name the first one's group (links.py).
GROUP_FIELD = "upload_group"

CUT_SHORT = "The upload was cut short or malformed. Please try again."
TOO_MANY_PARTS = (
    "This upload holds more parts than we can read in one go. Please send fewer files at a time."
)


async def _uid_list(form: MultipartStream) -> list[str]:
    text = await form.text(MAX_DONE_CHARS)
    return [uid.strip() for uid in text.split(",") if uid.strip()]


def too_many_files(skipped: int) -> str:
    """Why the files past the per-request maximum were not stored, and what to do."""
    return (
        f"One upload can carry at most {MAX_FILES_PER_REQUEST:,} files, so we did not store "
        f"the other {files_text(skipped)}. Send the same files or folder again: the files we "
        "have already are recognised and not stored twice."
    )


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
        try:
            self._parser = PushMultipartParser(options["boundary"], max_segment_count=MAX_PARTS)
        except MultipartError:
            raise ShownError(detail=CUT_SHORT) from None
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
        except ParserLimitReached as limit:
            if "count" in str(limit):
                raise ShownError(status_code=413, detail=TOO_MANY_PARTS) from None
            raise ShownError(detail=CUT_SHORT) from None  # a part's headers: no browser's
        except MultipartError:  # malformed, cut short, or the parser misused
            raise ShownError(detail=CUT_SHORT) from None

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


@dataclass
class Outcome:
    """What became of one file of a form: `document` holds it (stored now, or `already` there
    with the same content), or it was `refused` (why, in plain words, and the status)."""

    name: str
    document: Document | None = None
    already: bool = False
    refused: str = ""
    status: int = 0
    full: bool = False  # refused because the case or the account has no room left
    system: bool = False  # a system file (.DS_Store, Thumbs.db…): left out, not read


@dataclass
class Received:
    """What a form brought, so far if it stopped half way: each file's outcome, the pieced
    uploads and earlier batches it says were finished before it (upload.js), and why the rest
    was not read (`stopped`, a sentence, with its status)."""

    outcomes: list[Outcome] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    earlier: list[str] = field(default_factory=list)
    earlier_already: int = 0
    group: str = ""
    skipped: int = 0  # files past MAX_FILES_PER_REQUEST, read and dropped
    stopped: str = ""
    stopped_status: int = 0

    @property
    def stored(self) -> list[Document]:
        """Documents this form stored (not those it found there already)."""
        return [o.document for o in self.outcomes if o.document is not None and not o.already]

    @property
    def files(self) -> bool:
        """Whether the form brought any file other than system files."""
        return any(not o.system for o in self.outcomes)

    def stop(self, status: int, sentence: str) -> None:
        self.stopped, self.stopped_status = sentence, status


# store(filename, chunks, checklist_item) → the document, and whether it was there already
Store = Callable[[str, AsyncIterator[bytes], str | None], Awaitable[documents.Stored]]


async def receive_files(
    request: Request,
    received: Received,
    *,
    store: Store,
    checklist_keys: set[str] | None = None,
    before_first_file: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Read the form as it arrives into `received`: the CSRF token before any file byte, a
    checklist item (one of `checklist_keys`; None takes none), the finished pieced uploads and
    earlier batches, and each file through `store`. A refused file is noted and the next one
    read; a form that cannot be read on is noted in `received.stopped` (raises only for a bad
    CSRF token, and for what `before_first_file()` raises: it runs once, before the first file
    is stored, and a link takes its use then)."""
    header_token = request.headers.get("x-csrftoken", "")
    if header_token and not csrf_matches(request, header_token):
        raise PermissionDeniedException("CSRF token verification failed")
    declared = int(request.headers.get("content-length") or 0)
    limit = request.app.state.settings.max_file_bytes * MAX_FILES_PER_REQUEST
    if declared > limit:
        raise documents.UploadRefused(status=413, message="This upload is too large.")
    form = MultipartStream(request)
    checked = bool(header_token)
    checklist_item: str | None = None
    started = False
    try:
        while (part := await form.next_part()) is not None:
            if part.name == "_csrf_token":
                checked = csrf_matches(request, await form.text())
            if not checked:  # no file byte is read before the token is verified
                raise PermissionDeniedException("CSRF token verification failed")
            if part.name == "checklist_item" and checklist_keys is not None:
                value = (await form.text(100)).strip()
                checklist_item = value if value in checklist_keys else None
            elif part.name == DONE_UPLOADS_FIELD:
                received.finished = await _uid_list(form)
            elif part.name == DONE_DOCUMENTS_FIELD:
                received.earlier = await _uid_list(form)
            elif part.name == DONE_ALREADY_FIELD:
                count = (await form.text(10)).strip()
                received.earlier_already = min(int(count), 10**6) if count.isdigit() else 0
            elif part.name == GROUP_FIELD:
                received.group = (await form.text(200)).strip()
            elif part.name == "file" and part.filename:
                if len(received.outcomes) >= MAX_FILES_PER_REQUEST:
                    received.skipped += 1  # its bytes are dropped by next_part()
                    continue
                if is_junk(part.filename):  # its bytes are dropped by next_part()
                    received.outcomes.append(Outcome(display_name(part.filename), system=True))
                    continue
                if not started and before_first_file is not None:
                    await before_first_file()
                started = True
                received.outcomes.append(
                    await _one_file(store, part.filename, form, checklist_item)
                )
    except ShownError as stopped:
        received.stop(stopped.status_code, str(stopped.detail))
    if received.skipped:
        received.stop(413, too_many_files(received.skipped))


async def _one_file(
    store: Store, filename: str, form: MultipartStream, checklist_item: str | None
) -> Outcome:
    name = display_name(filename)
    try:
        stored = await store(filename, form.body(), checklist_item)
    except documents.UploadRefused as refused:
        full = refused.message == documents.NO_ROOM
        return Outcome(name, refused=refused.message, status=refused.status, full=full)
    return Outcome(name, stored.document, already=stored.already)


def summary(received: Received, finished: list[Document]) -> documents.UploadResult:
    """The result to show for a form: what it stored and found there already, what it refused,
    why it stopped, with `finished` (pieced uploads and earlier batches it named) counted in."""
    refused = [documents.LeftOut(o.name, o.refused) for o in received.outcomes if o.refused]
    already = sum(1 for o in received.outcomes if o.already) + received.earlier_already
    known = {doc.id for doc in received.stored}
    docs = received.stored + [doc for doc in finished if doc.id not in known]
    system = sum(1 for o in received.outcomes if o.system)
    return documents.upload_result(
        docs, already=already, refused=refused, stopped=received.stopped, system=system
    )


def answer_status(received: Received, result: documents.UploadResult) -> int:
    """200 when anything is in; the status of what stopped or refused the form otherwise."""
    if received.stopped:
        return received.stopped_status
    if not result.files and not result.already and any(o.refused for o in received.outcomes):
        return next(o.status for o in received.outcomes if o.refused)
    return 200


def outcome_data(received: Received, *, group: str = "") -> dict[str, object]:
    """Each file's outcome in the order it came, for upload.js (which knows their names): it
    carries this in `data-upload-outcome` on the answer's result."""
    files: list[dict[str, object]] = []
    for o in received.outcomes:
        if o.refused:
            files.append({"outcome": "refused", "reason": o.refused, "full": o.full})
        elif o.already:
            files.append({"outcome": "already"})
        elif o.system:
            files.append({"outcome": "skipped"})
        else:
            files.append({"outcome": "stored", "document": str(o.document.uid)})  # type: ignore[union-attr]
    return {"files": files, "stopped": received.stopped, "group": group}

"""Files arriving in a multipart form, read from the raw request stream as they come.

Both upload forms (the patient's, core/documents/routes.py; the doctor's office's, through a
link, core/documents/provider_routes.py) go through `receive_files`: file bytes go straight into
the sealer, because Litestar's UploadFile would spool parts over 1 MiB to a plaintext temp file.
The routes are excluded from Litestar's CSRF middleware (which would parse the whole body first);
the token is checked here, from the `x-csrftoken` header (htmx, upload.js) or from the form's
first field, before any file byte is accepted (a plain form without JavaScript).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from hashlib import sha256

from litestar import Request
from litestar.exceptions import PermissionDeniedException
from multipart import MultipartSegment, ParserError, PushMultipartParser, parse_options_header

from core.documents import service as documents
from core.documents.tables import Document
from core.error_pages import ShownError

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


@dataclass
class Received:
    """What a form brought: the documents stored (so far, if it failed half way), and the
    pieced uploads it says were finished before it (upload.js)."""

    stored: list[Document] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)


# store(filename, chunks, checklist_item) → the stored document
Store = Callable[[str, AsyncIterator[bytes], str | None], Awaitable[Document]]


async def receive_files(
    request: Request,
    received: Received,
    *,
    store: Store,
    checklist_keys: set[str] | None = None,
    before_first_file: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Read the form as it arrives into `received`: the CSRF token before any file byte, a
    checklist item (one of `checklist_keys`; None takes none), the finished pieced uploads, and
    each file through `store`. `before_first_file()` runs once, before the first file is stored
    (a link takes its use then); it refuses by raising."""
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
    while (part := await form.next_part()) is not None:
        if part.name == "_csrf_token":
            checked = csrf_matches(request, await form.text())
        if not checked:  # no file byte is read before the token is verified
            raise PermissionDeniedException("CSRF token verification failed")
        if part.name == "checklist_item" and checklist_keys is not None:
            value = (await form.text(100)).strip()
            checklist_item = value if value in checklist_keys else None
        elif part.name == DONE_UPLOADS_FIELD:
            received.finished = await done_uploads(form)
        elif part.name == "file" and part.filename:
            if not started and before_first_file is not None:
                await before_first_file()
            started = True
            received.stored.append(await store(part.filename, form.body(), checklist_item))

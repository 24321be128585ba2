"""`/verify`: anyone checks that a report PDF is one we issued, unchanged, and current.

Public (no sign-in) and without JavaScript: the form posts the report number and either the
PDF itself or its SHA-256, and the same page comes back with the answer
(core/reports/verification.py says what it may reveal: no medical data).

The PDF is a medical record, so it never touches the disk: the form is read from the raw
request stream (core/documents/upload_stream.py), the file hashed as it arrives and dropped.
That is why this POST is excluded from Litestar's CSRF middleware (which would parse the whole
multipart body first, spooling the file to a temp file): the token is checked here, before any
file byte is read, as the upload forms do.

Checks are rate-limited per address with the mechanism sign-in uses (Litestar's rate-limit
middleware, on the app's "rate_limit" store), under a key of their own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import PermissionDeniedException, TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.response import Template
from litestar.utils.scope.state import ScopeState

from core.audit import service as audit
from core.documents.upload_stream import MultipartStream, csrf_matches
from core.error_pages import ShownError
from core.reports import verification
from core.web import client_ip, page

TEMPLATE = "reports/verify.html"
MAX_PDF_BYTES = 20 * 1024 * 1024  # a report is a few hundred KB; room for scanned copies
FORM_SLACK = 64 * 1024  # the form's other fields and the multipart framing
MAX_FIELD_CHARS = 200  # number and hash are far shorter; anything longer is not one
CHECKS_PER_HOUR = 60  # per address: a person checks a few; a script cannot sweep
PDF_MAGIC = b"%PDF-"

# Problems of reading the form; what the entries mean is verification.check_entries's.
MESSAGES = {
    "not_pdf": "This file is not a PDF. Choose the report file exactly as you received it.",
    "empty": "This file is empty. Choose the report's PDF file.",
    "too_large": f"This file is larger than {MAX_PDF_BYTES // (1024 * 1024)} MB, so it cannot be "
    "one of our reports. Check that you chose the right file.",
    "unreadable": "The form could not be read. Please try again.",
}
TOO_MANY = "Too many checks from your network. Please wait {wait} and try again."


def _limited(request: Request) -> bool:
    return request.method == "POST"


def _identifier(request: Request) -> str:
    # Its own key: checks must not use up the sign-in allowance of the same address (the
    # middleware's key is "<class name>::<identifier>").
    return "verify::" + get_remote_address(request)


RATE_LIMIT = RateLimitConfig(
    rate_limit=("hour", CHECKS_PER_HOUR),
    check_throttle_handler=_limited,
    identifier_for_request=_identifier,
    store="rate_limit",
)


@dataclass
class Submitted:
    """What the form brought: the typed values, the file's hash, and what was wrong."""

    values: dict[str, str] = field(default_factory=dict)
    file_sha256: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    status: int = 400


def _wait_words(seconds: int) -> str:
    minutes = max(1, (seconds + 59) // 60)
    return "a minute" if minutes == 1 else f"{minutes} minutes"


def too_many_checks(request: Request, exc: TooManyRequestsException) -> Response:
    """The middleware's refusal, said plainly, with Retry-After (from its RateLimit-Reset)."""
    reset = (exc.headers or {}).get("RateLimit-Reset", "60")
    seconds = max(1, int(reset)) if str(reset).isdigit() else 60
    message = TOO_MANY.format(wait=_wait_words(seconds))
    _keep_token(request)
    return Template(
        TEMPLATE,
        context={"values": {}, "errors": {}, "verdict": None, "limited": message},
        status_code=429,
        headers={"retry-after": str(seconds)},
    )


class VerifyController(Controller):
    path = "/verify"
    middleware = [RATE_LIMIT.middleware]
    exception_handlers = {TooManyRequestsException: too_many_checks}

    @get("/")
    async def form(self, request: Request) -> Template:
        return page(request, TEMPLATE, values={}, errors={}, verdict=None)

    @post(
        "/",
        opt={"exclude_from_csrf": True},
        request_max_body_size=MAX_PDF_BYTES + FORM_SLACK,
    )
    async def check(self, request: Request) -> Template:
        _keep_token(request)
        submitted = await _read_form(request)
        values = submitted.values
        number, digest, errors = verification.check_entries(
            values.get("number"), values.get("sha256"), submitted.file_sha256, submitted.errors
        )
        if errors:
            await _audit(request, "invalid", {"fields": ",".join(sorted(errors))})
            return page(
                request, TEMPLATE, submitted.status, values=values, errors=errors, verdict=None
            )
        assert number is not None
        verdict = await verification.verify(number, digest)
        details: dict[str, Any] = {"by": "file" if submitted.file_sha256 else "hash"}
        report_uid = None
        if verdict.authentic:
            details["version"] = verdict.version
            report_uid = await verification.report_uid(verdict.number)
        await _audit(request, verdict.outcome, details, report_uid)
        return page(request, TEMPLATE, values=values, errors={}, verdict=verdict)


async def _audit(
    request: Request, outcome: str, details: dict[str, Any], report_uid: str | None = None
) -> None:
    # Never the number typed nor the hash: only what the check found, and the report's id.
    signed_in = request.scope.get("auth") == "full"
    await audit.record(
        "report.verify",
        actor=request.scope.get("user") if signed_in else None,
        object_type="report" if report_uid else None,
        object_id=report_uid,
        outcome=outcome,
        ip=client_ip(request),
        details=details,
    )


def _keep_token(request: Request) -> None:
    """The page shown in answer carries the browser's CSRF token, so its form can be sent
    again (Litestar's middleware does this for the POSTs it checks; this one it skips)."""
    config = request.app.csrf_config
    cookie = request.cookies.get(config.cookie_name, "") if config else ""
    if cookie:
        ScopeState.from_scope(request.scope).csrf_token = cookie


def _csrf_passed(request: Request, token: str) -> None:
    """Refuse a POST without a valid token, as Litestar's middleware would."""
    if not csrf_matches(request, token):
        raise PermissionDeniedException("CSRF token verification failed")


async def _read_form(request: Request) -> Submitted:
    submitted = Submitted()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PDF_BYTES + FORM_SLACK:
        # Refused before a byte is read (Litestar would refuse it too, less clearly). A plain
        # form's token is in the unread body: nothing is checked, so nothing needs it.
        submitted.errors["file"] = MESSAGES["too_large"]
        submitted.status = 413
        return submitted
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        await _read_multipart(request, submitted)
    else:
        await _read_urlencoded(request, submitted)
    return submitted


async def _read_urlencoded(request: Request, submitted: Submitted) -> None:
    body = bytearray()
    limit = request.app.state.settings.max_request_bytes
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # no form of ours is this long without a file
            submitted.errors["number"] = MESSAGES["unreadable"]
            submitted.status = 413
            return
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    except ValueError:
        pairs = []
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    _csrf_passed(request, request.headers.get("x-csrftoken") or fields.get("_csrf_token", ""))
    for name in ("number", "sha256"):
        submitted.values[name] = fields.get(name, "")[:MAX_FIELD_CHARS]


async def _read_multipart(request: Request, submitted: Submitted) -> None:
    header_token = request.headers.get("x-csrftoken", "")
    checked = False
    if header_token:
        _csrf_passed(request, header_token)
        checked = True
    try:
        form = MultipartStream(request)
        while (part := await form.next_part()) is not None:
            if part.name == "_csrf_token" and not checked:
                _csrf_passed(request, (await form.text(MAX_FIELD_CHARS)).strip())
                checked = True
                continue
            if not checked:  # no byte of the file before the token (as the upload forms)
                raise PermissionDeniedException("CSRF token verification failed")
            if part.name in ("number", "sha256") and part.name not in submitted.values:
                text = await form.text(MAX_FIELD_CHARS * 4)
                submitted.values[part.name] = text[:MAX_FIELD_CHARS]
            elif part.name == "file" and part.filename and not submitted.file_sha256:
                if not await _hash_file(form, submitted):
                    return  # too large: the rest of the body is not read
    except ShownError as problem:  # cut short, malformed, a field too long
        if not checked:
            raise PermissionDeniedException("CSRF token verification failed") from None
        submitted.errors.setdefault("number", MESSAGES["unreadable"])
        submitted.status = problem.status_code
    if not checked:
        raise PermissionDeniedException("CSRF token verification failed")


async def _hash_file(form: MultipartStream, submitted: Submitted) -> bool:
    """Hash the file part as it arrives (nothing kept but its first bytes); False when it is
    over the limit (then the form is not read further)."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    async for chunk in form.body():
        size += len(chunk)
        if size > MAX_PDF_BYTES:
            submitted.errors["file"] = MESSAGES["too_large"]
            submitted.status = 413
            return False
        if len(head) < len(PDF_MAGIC):
            head += chunk[: len(PDF_MAGIC) - len(head)]
        digest.update(chunk)
    if size == 0:
        submitted.errors["file"] = MESSAGES["empty"]
    elif not head.startswith(PDF_MAGIC):
        submitted.errors["file"] = MESSAGES["not_pdf"]
    else:
        submitted.file_sha256 = digest.hexdigest()
    return True


ROUTES = [VerifyController]

"""Error pages: a plain message for people, never a stack trace or another's data.

A service refuses with `core.errors.Refused` (or `InvalidInput` for field errors); handlers
that do not catch it get the page this module renders, with its status and sentence.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from core.errors import Refused

log = logging.getLogger("consilium.errors")


class ShownError(HTTPException):
    """An error whose detail is written for people and safe to show them."""

    status_code = 400


MESSAGES = {
    400: ("Something in the request was not right", "Please go back and try again."),
    401: ("Please sign in", "You need to sign in to see this page."),
    403: ("Not available", "This page or action is not available to your account."),
    404: (
        "Page not found",
        "We could not find that page. It may have moved, or the link may be wrong.",
    ),
    405: ("Not allowed", "That action is not possible on this page."),
    413: ("Too large", "What you sent is larger than we accept."),
    409: ("Not possible now", "This cannot be done at the moment."),
    415: ("File not accepted", "This kind of file cannot be uploaded."),
    429: ("Too many attempts", "Please wait a minute and try again."),
    500: (
        "Something went wrong on our side",
        "Nothing you entered is lost. Please try again in a few minutes.",
    ),
}


def render_error(request: Request, status: int, detail: str | None = None) -> Response:
    title, text = MESSAGES.get(status, MESSAGES[500] if status >= 500 else MESSAGES[400])
    if request.headers.get("hx-request") or request.headers.get("x-upload-client"):
        # htmx swaps only 2xx by default; say it in a way the page's live region can show.
        return Response(content=detail or text, status_code=status, media_type="text/plain")
    return Template(
        "error.html",
        context={"status": status, "title": title, "text": detail or text},
        status_code=status,
    )


def http_exception(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if isinstance(exc, NotAuthorizedException) and request.method == "GET":
        if not request.headers.get("hx-request"):
            return Redirect(path=f"/login?next={request.url.path}", status_code=303)
    # Only messages we wrote ourselves (readable sentences) are shown; framework detail is not.
    detail = exc.detail if isinstance(exc, ShownError) else None
    if status == 403 and "CSRF" in str(exc.detail):
        detail = "This form had expired. Please go back, reload the page and try again."
    return render_error(request, status, detail)


def internal_error(request: Request, exc: Exception) -> Response:
    # The route template, not the path: a path can hold a token (upload links, resets).
    route = request.scope.get("path_template", "?")
    log.error("unhandled error on %s %s: %s", request.method, route, type(exc).__name__)

    return render_error(request, HTTP_500_INTERNAL_SERVER_ERROR)


def refused(request: Request, exc: Refused) -> Response:
    """A service's refusal that its handler did not turn into a page of its own."""
    return render_error(request, exc.status, exc.message or None)


def exception_handlers() -> dict:
    return {HTTPException: http_exception, Refused: refused, Exception: internal_error}

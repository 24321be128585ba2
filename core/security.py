"""Sessions, the signed-in user, guards and security headers.

Litestar's server-side session backend keeps whatever session id the client sends, which makes
session fixation work out of the box. `RotatingSessionBackend` issues ids itself: an id the
store does not know is never reused, and `rotate_session()` swaps the id on every change of
privilege (sign-in, second factor, sign-out).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.types.empty import Empty

from core.audit import service as audit
from core.roles import AUTH_FULL
from core.settings import Settings


class Account(Protocol):
    """The signed-in account as sessions need it (core.accounts.tables.User has these)."""

    uid: Any
    session_epoch: int


# The last time a session was used is noted at most this often: a request that changes nothing
# else then writes nothing (no store write, no new cookie). The idle timeout ends a session
# between idle_minutes - 1 and idle_minutes after its last use.
SEEN_RESOLUTION_SECONDS = 60

# Keys in the scope that carry this request's session bookkeeping.
_SESSION_STATE = "consilium.session"


@dataclass
class _SessionState:
    presented_id: str | None = None
    known: bool = False
    rotate: bool = False
    new_id: str | None = None
    loaded: bytes | None = None  # the stored bytes as this request found them


class RotatingSessionBackend(ServerSideSessionBackend):
    def _state(self, connection: ASGIConnection) -> _SessionState:
        return connection.scope.setdefault(_SESSION_STATE, _SessionState())  # type: ignore[typeddict-item]

    async def load_from_connection(self, connection: ASGIConnection) -> dict[str, Any]:
        state = self._state(connection)
        session_id = connection.cookies.get(self.config.key)
        state.presented_id = session_id
        if session_id:
            store = self.config.get_store_from_app(connection.scope["app"])
            data = await self.get(session_id, store=store)
            if data is not None:
                state.known, state.loaded = True, data
                return self.deserialize_data(data)
        return {}

    def get_session_id(self, connection: ASGIConnection) -> str:
        state = self._state(connection)
        if state.known and not state.rotate and state.presented_id:
            return state.presented_id
        if state.new_id is None:
            state.new_id = self.generate_session_id()
        return state.new_id

    async def store_in_message(
        self, scope_session: Any, message: Message, connection: ASGIConnection
    ) -> None:
        state = self._state(connection)
        store = self.config.get_store_from_app(connection.scope["app"])
        if state.known and state.presented_id and (state.rotate or not scope_session):
            await self.delete(state.presented_id, store=store)
        if scope_session is Empty or not scope_session:
            if state.presented_id:  # tell the browser to forget the cookie
                await super().store_in_message(Empty, message, connection)
            return
        unchanged = (
            state.known
            and not state.rotate
            and state.loaded == self.serialize_data(scope_session, connection.scope)
        )
        if unchanged:
            return  # nothing to write, and the browser's cookie stays as it is
        await super().store_in_message(scope_session, message, connection)


class RotatingSessionConfig(ServerSideSessionConfig):
    _backend_class = RotatingSessionBackend  # type: ignore[assignment]


def rotate_session(connection: ASGIConnection) -> None:
    """Give this session a new id when the response is sent (the old one stops working)."""
    state = connection.scope.setdefault(_SESSION_STATE, _SessionState())  # type: ignore[typeddict-item]
    state.rotate = True


def session_config(settings: Settings) -> RotatingSessionConfig:
    return RotatingSessionConfig(
        key=f"{settings.cookie_prefix}session",
        store="sessions",
        max_age=settings.session_idle_minutes * 60,
        renew_on_access=False,  # renewed when written (the last-seen time, once a minute)
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
        path="/",
    )


# A browser that signed in before (core/accounts/service.py: device cookies against lockout).
DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600


def device_cookie_name(settings: Settings) -> str:
    return f"{settings.cookie_prefix}device"


def device_cookie(settings: Settings, value: str) -> Cookie:
    return Cookie(
        key=device_cookie_name(settings),
        value=value,
        max_age=DEVICE_COOKIE_MAX_AGE,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


# The signed-in user ---------------------------------------------------------------------------


class CurrentUserMiddleware(ASGIMiddleware):
    """Puts the signed-in user (or None) in `scope["user"]` and `scope["auth"]`.

    Ends the session when it is idle too long, too old, or when the user's session epoch moved
    (sign-out everywhere, password change, account disabled).
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, settings: Settings, load_user: Callable[[str], Awaitable[Any]]) -> None:
        # `load_user(uid)`: the active account with this uid, or None (core.accounts.service:
        # get_active_user; given by the app so that this web module imports no domain).
        self.settings = settings
        self.load_user = load_user

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        scope["user"] = None
        scope["auth"] = None
        session = scope.get("session")
        if isinstance(session, dict) and session.get("uid"):
            now = time.time()
            fresh = (
                now - session.get("seen", 0) < self.settings.session_idle_minutes * 60
                and now - session.get("created", 0) < self.settings.session_absolute_hours * 3600
            )
            user = await self.load_user(session["uid"]) if fresh else None
            if user is not None and user.session_epoch == session.get("epoch"):
                scope["user"] = user
                scope["auth"] = session.get("auth")
                if now - session.get("seen", 0) >= SEEN_RESOLUTION_SECONDS:
                    session["seen"] = now  # a write (and a renewed cookie) once a minute at most
            else:
                session.clear()
        await next_app(scope, receive, send)


def start_session(connection: ASGIConnection, user: Account, auth: str) -> None:
    """Sign `user` in at level `auth`, under a new session id."""
    now = time.time()
    session = connection.scope.get("session")
    created = session.get("created", now) if isinstance(session, dict) and session else now
    if auth == AUTH_FULL and isinstance(session, dict) and session.get("auth") != AUTH_FULL:
        created = now  # the absolute lifetime counts from the full sign-in
    connection.scope["session"] = {
        "uid": str(user.uid),
        "epoch": user.session_epoch,
        "auth": auth,
        "created": created,
        "seen": now,
    }
    connection.scope["user"] = user
    connection.scope["auth"] = auth
    rotate_session(connection)


def end_session(connection: ASGIConnection) -> None:
    connection.scope["session"] = {}
    connection.scope["user"] = None
    connection.scope["auth"] = None
    rotate_session(connection)


# Guards ----------------------------------------------------------------------------------------


def signed_in(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if connection.scope.get("user") is None or connection.scope.get("auth") != AUTH_FULL:
        raise NotAuthorizedException("Please sign in to continue.")


def role_guard(*roles: str):
    """Signed in fully, with one of `roles`; anonymous is 401, a signed-in other role 403.

    A signed-in person refused a page is written to the audit log (docs/security.md 22).
    """

    async def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        signed_in(connection, handler)
        user = connection.scope["user"]
        if user.role not in roles:  # type: ignore[union-attr]
            await record_denied(connection, reason="role")
            raise PermissionDeniedException("This page is not available to your account.")

    guard.__name__ = f"role_guard_{'_'.join(roles)}"
    return guard


async def record_denied(connection: ASGIConnection, *, reason: str) -> None:
    route = connection.scope.get("path_template") or connection.scope.get("path", "")
    await audit.record(
        "access.denied",
        actor=connection.scope.get("user"),
        outcome="denied",
        ip=connection.client.host if connection.client else None,
        details={"route": f"{connection.scope.get('method', '')} {route}", "reason": reason},
    )


def pending_auth_guard(*levels: str):
    """Only a session at one of the partial levels (second factor due, or enrolment due)."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        if connection.scope.get("user") is None or connection.scope.get("auth") not in levels:
            raise NotAuthorizedException("Please sign in to continue.")

    return guard


# Headers ---------------------------------------------------------------------------------------

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

# The bytes of a record shown in the browser (core/documents/routes.py `preview`): an opaque,
# script-less document that loads nothing and can't be framed; our pages fetch PDFs and show
# images by <img>. `img-src 'self'` lets an image opened at its own address show in browsers that
# apply this policy to the image document itself (Chromium shows it either way).
SANDBOX_CSP = (
    "sandbox; default-src 'none'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
# The only policies a route may put in place of CSP: each is stricter than the page policy.
ROUTE_CSPS = frozenset({SANDBOX_CSP})


def security_headers(settings: Settings):
    """A before_send hook: runs for every response, including errors, 404s and static files."""
    fixed = [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
        ("permissions-policy", "camera=(), microphone=(), geolocation=()"),
    ]
    if settings.base_url.startswith("https://"):
        fixed.append(("strict-transport-security", "max-age=31536000; includeSubDomains"))

    async def before_send(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        headers = MutableScopeHeaders.from_message(message)
        for name, value in fixed:
            # A route may tighten the referrer policy (pages whose URL holds a token).
            if name == "referrer-policy" and headers.get(name) == "no-referrer":
                continue
            if name == "content-security-policy" and headers.get(name) in ROUTE_CSPS:
                continue
            headers[name] = value
        # Pages are personal: never let a shared cache or the back button keep them.
        if not scope.get("path", "").startswith("/static/"):
            headers["cache-control"] = "no-store"

    return before_send

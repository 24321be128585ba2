"""A local HTTP server that speaks Stripe's wire format for the calls Consilium makes.

POST /v1/checkout/sessions, POST /v1/checkout/sessions/{id}/expire and POST /v1/refunds,
form-encoded with bracketed keys, bearer-key authentication, and Stripe's idempotency rules
(same key and same parameters: the saved response; same key, other parameters: 400
idempotency_error; same key while the first request still runs: 409 idempotency_key_in_use).
Events are built and signed as Stripe signs them
(`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t." + raw body)`); a charge carries the
metadata its PaymentIntent was given (`payment_intent_data[metadata][…]`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

SECRET_KEY = "sk_test_consilium"
WEBHOOK_SECRET = "whsec_consilium_test"


@dataclass
class Emulator:
    url: str = ""
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    sessions: dict[str, dict] = field(default_factory=dict)
    fail_next: int = 0  # answer this many calls with HTTP 500
    delay: float = 0.0  # seconds each call takes (to overlap concurrent requests)
    refund_status: str = "succeeded"  # what a new refund reports ("pending" for slow methods)
    intent_metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # by session id
    _idempotent: dict[str, tuple[dict, tuple[int, dict]]] = field(default_factory=dict)
    _running: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict]:
        self.requests.append((path, headers, form))
        if headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return 401, _error("invalid_request_error", "Invalid API Key provided.")
        if self.fail_next:
            self.fail_next -= 1
            return 500, _error("api_error", "Something went wrong on Stripe's end.")
        key = headers.get("idempotency-key", "")
        with self._lock:
            if key in self._idempotent:
                params, saved = self._idempotent[key]
                if params != form:
                    return 400, _error(
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters.",
                    )
                return saved
            if key in self._running:
                return 409, _error(
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent Key "
                    "(that probably means you submitted twice, and the other request is still "
                    "going through): " + key + ". Please try again later.",
                    code="idempotency_key_in_use",
                )
            if key:
                self._running.add(key)
        try:
            if self.delay:
                time.sleep(self.delay)
            saved = self._execute(path, form)
            with self._lock:
                if key and saved[0] != 404:
                    self._idempotent[key] = (form, saved)
            return saved
        finally:
            with self._lock:
                self._running.discard(key)

    def _execute(self, path: str, form: dict[str, str]) -> tuple[int, dict]:
        if path == "/v1/checkout/sessions":
            return 200, self._session(form)
        if expire := re.fullmatch(r"/v1/checkout/sessions/([^/]+)/expire", path):
            session = self.sessions.get(expire[1])
            if session is None:
                return 404, _error(
                    "invalid_request_error",
                    f"No such checkout.session: '{expire[1]}'",
                    code="resource_missing",
                )
            if session["status"] != "open":
                return 400, _error(
                    "invalid_request_error",
                    'Only Checkout Sessions with a status in ["open"] can be expired.',
                )
            session["status"] = "expired"
            return 200, dict(session)
        if path == "/v1/refunds":
            return 200, {
                "id": "re_" + secrets.token_hex(12),
                "object": "refund",
                "status": self.refund_status,
                "payment_intent": form.get("payment_intent"),
                "amount": int(form.get("amount", "0")),
                "metadata": _metadata(form, "metadata"),
            }
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({path}).")

    def _session(self, form: dict[str, str]) -> dict:
        session_id = "cs_test_" + secrets.token_hex(16)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "mode": form.get("mode"),
            "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
            "currency": form["line_items[0][price_data][currency]"],
            "client_reference_id": form.get("client_reference_id"),
            "payment_status": "unpaid",
            "payment_intent": None,
            "status": "open",
            "metadata": _metadata(form, "metadata"),
        }
        self.sessions[session_id] = session
        self.intent_metadata[session_id] = _metadata(form, "payment_intent_data[metadata]")
        return session

    # Events, as Stripe sends them ---------------------------------------------------------

    def event(
        self, kind: str, session_id: str, *, created: int | None = None, **changes: object
    ) -> bytes:
        """The event Stripe sends about a session (the session's state changes with it)."""
        session = self.sessions[session_id]
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            session |= {"payment_status": "paid", "status": "complete"}
            session["payment_intent"] = "pi_" + session_id[-16:]
        if kind == "checkout.session.expired":
            session |= {"status": "expired"}
        obj = dict(session)
        if kind == "charge.refunded":
            obj = {
                "id": "ch_" + session_id[-16:],
                "object": "charge",
                "payment_intent": "pi_" + session_id[-16:],
                "amount_refunded": obj["amount_total"],
                "currency": obj["currency"],
                "refunded": True,
                "metadata": dict(self.intent_metadata.get(session_id, {})),
            }
        return _event(kind, obj | changes, created)

    def foreign_refund(self, amount: int = 2500, currency: str = "usd") -> bytes:
        """charge.refunded for a charge another system on the same account made."""
        suffix = secrets.token_hex(8)
        charge = {
            "id": "ch_" + suffix,
            "object": "charge",
            "payment_intent": "pi_" + suffix,
            "amount_refunded": amount,
            "currency": currency,
            "refunded": True,
            "metadata": {"order_id": "shop-1234"},
        }
        return _event("charge.refunded", charge, None)


def _event(kind: str, obj: dict, created: int | None) -> bytes:
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created,
        "type": kind,
        "livemode": False,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


def _metadata(form: dict[str, str], prefix: str) -> dict[str, str]:
    start = prefix + "["
    return {k[len(start) : -1]: v for k, v in form.items() if k.startswith(start)}


def signature(body: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def _error(kind: str, message: str, *, code: str | None = None) -> dict:
    error = {"type": kind, "message": message}
    if code:
        error["code"] = code
    return {"error": error}


def start() -> tuple[Emulator, ThreadingHTTPServer]:
    emulator = Emulator()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = emulator.handle(self.path, headers, form)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("request-id", "req_" + secrets.token_hex(8))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    emulator.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return emulator, server

"""A local HTTP server that speaks Stripe's wire format for the calls Consilium makes.

POST /v1/checkout/sessions and POST /v1/refunds, form-encoded with bracketed keys, bearer-key
authentication, and Stripe's idempotency rule (same key and same parameters: the same object;
same key, other parameters: 400 idempotency_error). Events are built and signed as Stripe signs
them (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t." + raw body)`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
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
    _idempotent: dict[str, tuple[dict, dict]] = field(default_factory=dict)

    def handle(self, path: str, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict]:
        self.requests.append((path, headers, form))
        if headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return 401, _error("invalid_request_error", "Invalid API Key provided.")
        if self.fail_next:
            self.fail_next -= 1
            return 500, _error("api_error", "Something went wrong on Stripe's end.")
        key = headers.get("idempotency-key", "")
        if key in self._idempotent:
            params, response = self._idempotent[key]
            if params != form:
                return 400, _error(
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters.",
                )
            return 200, response
        if path == "/v1/checkout/sessions":
            response = self._session(form)
        elif path == "/v1/refunds":
            response = {
                "id": "re_" + secrets.token_hex(12),
                "object": "refund",
                "status": "succeeded",
                "payment_intent": form.get("payment_intent"),
                "amount": int(form.get("amount", "0")),
            }
        else:
            return 404, _error("invalid_request_error", f"Unrecognized request URL ({path}).")
        if key:
            self._idempotent[key] = (form, response)
        return 200, response

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
            "metadata": {
                k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")
            },
        }
        self.sessions[session_id] = session
        return session

    # Events, as Stripe sends them ---------------------------------------------------------

    def event(self, kind: str, session_id: str, **changes: object) -> bytes:
        obj = dict(self.sessions[session_id])
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            obj |= {"payment_status": "paid", "status": "complete"}
            obj["payment_intent"] = "pi_" + session_id[-16:]
        if kind == "checkout.session.expired":
            obj |= {"status": "expired"}
        if kind == "charge.refunded":
            obj = {
                "id": "ch_" + session_id[-16:],
                "object": "charge",
                "payment_intent": "pi_" + session_id[-16:],
                "amount_refunded": obj["amount_total"],
                "currency": obj["currency"],
                "refunded": True,
            }
        obj |= changes
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": kind,
            "livemode": False,
            "data": {"object": obj},
        }
        return json.dumps(event).encode()


def signature(body: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    stamp = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def _error(kind: str, message: str) -> dict:
    return {"error": {"type": kind, "message": message}}


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

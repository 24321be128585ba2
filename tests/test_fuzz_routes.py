"""Malformed input never makes a server error: a property over every route of the app.

Hypothesis sends each route (every method of the authorization matrix, as anonymous, patients,
doctors and staff) odd path values, query strings and bodies: huge and negative numbers, broken
percent-encoding, unknown and repeated fields, wrong content types, multipart without a
boundary. Every answer must be a 2xx–4xx page without a traceback. The world it runs against is
the matrix's (a case with a record, a payment, a provider link, an unfinished upload).

`CONSILIUM_FUZZ_EXAMPLES` sets how many requests to try (CI: the default, derandomized so a
failure reproduces; locally, more finds more).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, example, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from tests.support import csrf_token
from tests.test_authorization import MATRIX, concrete

# The matrix's fixtures: its settings (a generous sign-in rate limit) and its world.
from tests.test_authorization import settings as settings
from tests.test_authorization import visitors as visitors

# 20 odd inputs per route and engine, plus the explicit examples below, in every run (about a
# minute per engine at 140 routes); CONSILIUM_FUZZ_EXAMPLES=200 for a deeper look.
EXAMPLES = int(os.environ.get("CONSILIUM_FUZZ_EXAMPLES", "20"))
ROOT = Path(__file__).resolve().parent.parent

# Routes that would end the visitor's session for every later example.
SKIPPED = {("POST", "/logout"), ("POST", "/account/sign-out-everywhere")}
ROUTES = sorted(route for route in MATRIX if route not in SKIPPED)

# Every field name a form of ours or of a plugin uses, plus the query parameters routes read.
FIELD_NAMES = sorted(
    {
        name
        for folder in ("templates", "plugins")
        for path in (ROOT / folder).rglob("*.html")
        for name in re.findall(r'name="([a-z_0-9]+)"', path.read_text())
    }
    | {"offset", "after", "before", "notice", "queue", "refresh", "from", "to", "email", "action"}
    | {"subject", "next"}
)

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["9223372036854775808", "-1", "1e309", "NaN", "0x10", "١٢", " 7 ", ""]),
).map(str)
texts = st.one_of(
    numbers,
    st.text(max_size=40),
    st.sampled_from(["%", "%zz", "../../etc/passwd", "\x00", "<script>", "a" * 5000, "∞"]),
)
names = st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=12))
pairs = st.lists(st.tuples(names, texts), max_size=6)


def encode(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='')}" for key, value in items)


raw_queries = st.one_of(
    pairs.map(encode),
    st.text(alphabet=st.sampled_from("a=&%;+?#[]0123456789zZ\\ "), max_size=30),
)
bodies = st.one_of(
    pairs.map(lambda items: (encode(items).encode(), "application/x-www-form-urlencoded")),
    st.binary(max_size=200).map(lambda data: (data, "application/x-www-form-urlencoded")),
    st.binary(max_size=200).map(lambda data: (data, "multipart/form-data")),
    st.binary(max_size=200).map(lambda data: (data, "multipart/form-data; boundary=x")),
    st.binary(max_size=200).map(lambda data: (data, "application/json")),
    st.binary(max_size=200).map(lambda data: (data, "application/octet-stream")),
    st.just((b"", "")),
)
path_values = st.one_of(st.none(), texts.filter(lambda value: "/" not in value and value))


def reaching_visitor(path: str, expected: dict[str, int]) -> str:
    """The visitor whose request reaches the handler's own checks (not a sign-in or role wall):
    the owning patient where allowed, else staff, else anybody."""
    for visitor in ("patient", "assigned_doctor", "coordinator", "admin", "anonymous"):
        if expected[visitor] not in (401, 403, 404) and not (
            visitor != "anonymous" and expected[visitor] == expected["anonymous"] == 303
        ):
            return visitor
    return "anonymous"


TARGETS = [
    (method, path, reaching_visitor(path, MATRIX[(method, path)])) for method, path in ROUTES
]


@st.composite
def malformed(draw: st.DrawFn) -> tuple[str | None, str, bytes, str]:
    """One odd input: a path value (None keeps the real object's id), a query, a body."""
    body, content_type = draw(bodies)
    return draw(path_values), draw(raw_queries), body, content_type


def target_url(path: str, value: str | None, ids: dict[str, str]) -> str:
    if path.startswith("/upload/"):  # a live provider link, so its handlers are reached
        path = path.replace("{token:str}", quote(ids["token"], safe=""), 1)
    if value is not None:  # the last parameter gets the odd value; the others stay real
        parameters = re.findall(r"\{[a-z_]+:[a-z]+\}", path)
        if parameters:
            head, _, tail = path.rpartition(parameters[-1])
            path = head + quote(value, safe="") + tail
    return concrete(path, ids)


@examples(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CONSILIUM_FUZZ_RANDOM") is None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=malformed())
# Found before (each was a 500): a NUL and an over-long name in a static path, an offset past
# the database's integer range.
@example(sent=("\x00", "", b"", ""))
@example(sent=("a" * 5000, "", b"", ""))
@example(sent=(None, "offset=9223372036854775808", b"", ""))
# Page cursors at the edges of what they may hold (the last day of year 9999, the largest id).
@example(sent=(None, "after=253402300799999999.2147483647&queue=declined", b"", ""))
@example(sent=(None, "before=253402300799999999.2147483647&before=0.0", b"", ""))
async def test_no_route_answers_a_server_error(visitors, sent) -> None:
    value, query, body, content_type = sent
    failures = []
    for method, path, visitor in TARGETS:
        url = target_url(path, value, visitors["_ids"]) + (f"?{query}" if query else "")
        client = visitors[visitor]
        headers = {"x-csrftoken": csrf_token(client)}
        if content_type and method != "GET":
            headers["content-type"] = content_type
        response = await client.request(
            method,
            url,
            content=body if method != "GET" and body else None,
            headers=headers,
            follow_redirects=False,
        )
        if response.status_code >= 500 or "Traceback" in response.text:
            failures.append(f"{method} {url} as {visitor}: {response.status_code}")
    assert not failures, "\n".join(failures)

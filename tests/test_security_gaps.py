"""docs/security.md items that had no test: 2, 6, 7, 8, 10, 11, 13, 22 and 24.

Each test fails if its protection breaks (each was checked by breaking the code on purpose).
"""

from __future__ import annotations

import re
import time
from contextlib import aclosing
from pathlib import Path

import pyotp
import pytest
from httpx import ASGITransport, AsyncClient
from jinja2 import meta
from markupsafe import escape

from core import clock
from core.accounts import service as accounts
from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.documents import links
from core.documents.tables import UploadSession
from core.notifications import service as notifications
from core.payments import service as payments
from tests.conftest import make_app, make_settings, open_client
from tests.payment_support import submitted_case, with_checkup
from tests.support import (
    PASSWORD,
    Person,
    csrf_token,
    make_person,
    post_form,
    read_mail,
    sign_in,
)
from tests.test_documents import files_under, new_case

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED = str(escape(XSS))


@pytest.fixture
def app(app):
    """The app with the small "checkup" specialty the payment helpers submit cases in."""
    return with_checkup(app)


def assert_escaped(html: str, where: str) -> None:
    assert XSS not in html, where
    assert ESCAPED in html, where


# 2. Two-factor sign-in: the per-account throttle on wrong codes -----------------------------


def wrong_code(person: Person) -> str:
    """Six digits that are no code of this person's app around now (drift allowed either way)."""
    totp = pyotp.TOTP(person.totp_secret or "")
    now = int(time.time() // 30)
    valid = {totp.generate_otp(step) for step in range(now - 2, now + 3)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


async def test_wrong_second_factor_codes_are_throttled_per_account(
    client, running_app, monkeypatch
) -> None:
    doctor = await make_person("doctor", "code-guess@example.com")
    await post_form(client, "/login", {"email": doctor.email, "password": PASSWORD})
    for _ in range(accounts.FREE_FAILURES):
        guess = await post_form(client, "/login/code", {"code": wrong_code(doctor)})
        assert guess.status_code == 400
    code = doctor.next_code()
    blocked = await post_form(client, "/login/code", {"code": code})  # even the right code
    assert blocked.status_code == 429 and "please wait" in blocked.text
    # Counted per account: a fresh sign-in from another browser is held back as well.
    async with open_client(running_app) as other:
        await post_form(other, "/login", {"email": doctor.email, "password": PASSWORD})
        assert (await post_form(other, "/login/code", {"code": code})).status_code == 429
    # The wait ends by itself (no permanent lock-out); the held-back code was not spent.
    later = clock.now() + accounts.FIRST_DELAY
    monkeypatch.setattr(clock, "now", lambda: later)
    done = await post_form(client, "/login/code", {"code": code})
    assert done.status_code == 303 and done.headers["location"] == "/dashboard"


# 6. A password change ends the user's other sessions -----------------------------------------


async def test_password_change_ends_other_sessions_and_keeps_this_one(client, running_app) -> None:
    person = await make_person("patient", "change-ends@example.com")
    new_password = "a different long passphrase"
    async with open_client(running_app) as other:
        await sign_in(other, person)
        await sign_in(client, person)
        changed = await post_form(
            client,
            "/account/password",
            {
                "current_password": PASSWORD,
                "new_password": new_password,
                "new_password_again": new_password,
            },
        )
        assert changed.headers["location"] == "/account?notice=password-changed"
        ended = await other.get("/dashboard", follow_redirects=False)
        assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
        assert (await client.get("/dashboard", follow_redirects=False)).status_code == 200


# 7. The CSRF cookie's flags ------------------------------------------------------------------


def csrf_set_cookie(response) -> str:
    [cookie] = [c for c in response.headers.get_list("set-cookie") if "csrftoken=" in c]
    return cookie


async def test_csrf_cookie_is_httponly_and_samesite_lax(client) -> None:
    cookie = csrf_set_cookie(await client.get("/login"))
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert cookie.startswith("csrftoken=")
    assert "httponly" in attributes and "samesite=lax" in attributes and "path=/" in attributes


async def test_csrf_cookie_is_secure_with_host_prefix_over_tls(tmp_path, database_url) -> None:
    base = "https://second-opinion.example.org"
    app = make_app(make_settings(tmp_path, database_url, base_url=base))
    async with AsyncClient(transport=ASGITransport(app=app), base_url=base) as browser:
        cookie = csrf_set_cookie(await browser.get("/login"))
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert cookie.startswith("__Host-csrftoken=")
    assert "secure" in attributes and "httponly" in attributes and "samesite=lax" in attributes
    assert "path=/" in attributes and not any(a.startswith("domain=") for a in attributes)


# 8. The provider's chunk PUT needs the CSRF token --------------------------------------------

SMALL_PDF = b"%PDF-1.7\n" + b"provider scan\n" * 200 + b"%%EOF\n"


async def test_provider_chunk_without_csrf_token_is_refused_and_stores_nothing(
    client, running_app, settings
) -> None:
    person, uid = await new_case(client, "provider-csrf@example.com")
    case = await cases.get_own_case(person.user, uid)
    _, token = await links.create_link(person.user, case, ip=None)
    async with open_client(running_app) as provider:
        assert (await provider.get(f"/upload/{token}")).status_code == 200
        good = {"x-csrftoken": csrf_token(provider), "x-upload-client": "1"}
        started = await provider.post(
            f"/upload/{token}/uploads",
            data={"filename": "scan.pdf", "size": str(len(SMALL_PDF))},
            headers=good,
        )
        assert started.status_code == 201, started.text
        chunk = f"/upload/{token}/uploads/{started.json()['upload']}/chunks/0"
        for headers in ({"x-upload-client": "1"}, {**good, "x-csrftoken": "forged"}):
            refused = await provider.put(chunk, content=SMALL_PDF, headers=headers)
            assert refused.status_code == 403
        [session] = await UploadSession.objects()
        assert session.chunks_done == 0 and session.status == "open"
        assert files_under(settings.var_dir / "documents" / "objects") == []
        # The same PUT with the token goes through: the refusal was the token's doing.
        assert (await provider.put(chunk, content=SMALL_PDF, headers=good)).status_code == 200


# 10. Output escaping: decline reasons, fee rule labels, staff bios ---------------------------


async def test_decline_reason_is_escaped_for_patient_and_staff(running_app) -> None:
    patient = open_client(running_app)
    coordinator = open_client(running_app)
    async with aclosing(patient), aclosing(coordinator):
        await sign_in(patient, await make_person("patient", "declined-xss@example.com"))
        await sign_in(coordinator, await make_person("coordinator", "decliner@example.com"))
        case = await submitted_case(patient)
        url = f"/staff/cases/{case.uid}/decline"
        assert (await post_form(coordinator, url, {"reason": XSS})).status_code == 303
        assert_escaped((await patient.get(f"/cases/{case.uid}")).text, "patient's case page")
        assert_escaped((await coordinator.get(f"/staff/cases/{case.uid}")).text, "staff page")


async def test_fee_rule_label_is_escaped_for_admin_and_patient(running_app) -> None:
    admin = open_client(running_app)
    patient = open_client(running_app)
    async with aclosing(admin), aclosing(patient):
        await sign_in(admin, await make_person("admin", "fee-xss@example.com"))
        rule = next(r for r in await payments.fee_rules() if r.country == "PK")
        fields = {"label": XSS, "country": "PK", "currency": "PKR", "amount": "4500"}
        saved = await post_form(admin, f"/admin/fees/{rule.uid}", {**fields, "active": "on"})
        assert saved.status_code == 303, saved.text[:2000]
        assert_escaped((await admin.get("/admin/fees")).text, "fee list")
        assert_escaped((await admin.get(f"/admin/fees/{rule.uid}")).text, "fee form")
        await sign_in(patient, await make_person("patient", "fee-reader@example.com"))
        case = await submitted_case(patient)
        assert_escaped((await patient.get(f"/cases/{case.uid}")).text, "patient's case page")


async def test_staff_bio_is_escaped_where_patients_choose_a_doctor(client, running_app) -> None:
    admin = await make_person("admin", "bio-admin@example.com")
    doctor = await make_person("doctor", "bio-xss@example.com", specialties=["general"])
    async with open_client(running_app) as admin_client:
        await sign_in(admin_client, admin)
        edited = await post_form(
            admin_client,
            f"/admin/staff/{doctor.user.uid}",
            {"full_name": "Dr Bio Writer", "role": "doctor", "bio": XSS, "specialties": "general"},
        )
        assert edited.status_code == 303, edited.text[:2000]
        assert_escaped((await admin_client.get(f"/admin/staff/{doctor.user.uid}")).text, "form")
    _, uid = await new_case(client, "bio-reader@example.com", "general")
    page = (await client.get(f"/requests/{uid}/doctor")).text
    assert "Dr Bio Writer" in page
    assert_escaped(page, "the doctor step")


# 11. Email links come from base_url, never from the Host header ------------------------------


async def test_email_links_use_base_url_not_the_host_header(client, settings) -> None:
    assert "localhost" in settings.hosts and "localhost" not in settings.base_url
    await make_person("patient", "host-reset@example.com")
    localhost = {"host": "localhost"}  # allowed outside production, yet not the base URL
    await client.get("/login", headers=localhost)
    headers = {"x-csrftoken": csrf_token(client), **localhost}
    reset = await client.post("/reset", data={"email": "host-reset@example.com"}, headers=headers)
    assert reset.headers["location"] == "/login?notice=reset-sent"
    form = {"full_name": "Host Header", "email": "host-new@example.com", "country": "PK"}
    registered = await client.post(
        "/register", data={**form, "password": PASSWORD}, headers=headers
    )
    assert registered.headers["location"] == "/register/check-email"
    sent = {(m["To"], m["Subject"]): m.get_content() for m in await read_mail(settings)}
    for key, path in [
        (("host-reset@example.com", "Reset your password"), "/reset/"),
        (("host-new@example.com", "Confirm your email address"), "/verify-email/"),
    ]:
        urls = re.findall(r"https?://\S+", sent[key])
        assert urls and all(url.startswith(f"{settings.base_url}/") for url in urls), urls
        assert any(url.startswith(f"{settings.base_url}{path}") for url in urls), urls


# 13. The global request body limit outside the upload routes ---------------------------------


@pytest.mark.parametrize("path", ["/register", "/login"])
async def test_oversized_form_gets_a_readable_413(client, settings, path: str) -> None:
    await client.get("/login")
    body = b"email=a%40example.com&full_name=" + b"x" * settings.max_request_bytes
    headers = {
        "x-csrftoken": csrf_token(client),
        "content-type": "application/x-www-form-urlencoded",
    }
    declared = await client.post(path, content=body, headers=headers)
    # httpx keeps a Content-Length the caller sets, so a body can be sent under a false one.
    understated = await client.post(path, content=body, headers={**headers, "content-length": "64"})
    for response in (declared, understated):
        assert response.status_code == 413
        assert "What you sent is larger than we accept." in response.text
        assert "Traceback" not in response.text


# 22. Sign-in and sign-out over HTTP write their audit rows -----------------------------------


async def sign_in_rows(*people: Person) -> list[tuple[str, str, str, str]]:
    """(action, whose account, outcome, IP) of every login*/logout row, oldest first."""
    names = {str(p.user.uid): p.user.role for p in people}
    rows = await AuditEvent.objects().where(AuditEvent.action.like("log%")).order_by(AuditEvent.seq)
    return [(r.action, names[r.subject_uid], r.outcome, r.ip) for r in rows]


async def test_sign_in_and_sign_out_are_audited(client) -> None:
    patient = await make_person("patient", "audited@example.com")
    doctor = await make_person("doctor", "audited-doctor@example.com")
    wrong = await post_form(client, "/login", {"email": patient.email, "password": "not it"})
    assert wrong.status_code == 400
    await sign_in(client, patient)
    await post_form(client, "/logout")
    await sign_in(client, doctor)
    await post_form(client, "/logout")
    ip = "127.0.0.1"  # httpx's ASGI transport reports this client address
    assert await sign_in_rows(patient, doctor) == [
        ("login.failure", "patient", "failure", ip),
        ("login.success", "patient", "success", ip),
        ("logout", "patient", "success", ip),
        ("login.password_ok", "doctor", "success", ip),
        ("login.success", "doctor", "success", ip),
        ("logout", "doctor", "success", ip),
    ]


# 24. No email template carries medical details -----------------------------------------------

EMAIL_TEMPLATES = Path(notifications.TEMPLATES) / "email"
# What an email may say: references, links, dates, whether a refund runs, the service's name.
ALLOWED_EMAIL_VALUES = {
    "base_url": "https://so.example.org",
    "hospital_name": "Example Hospital",
    "reference": "SO-2026-00042",
    "case_url": "https://so.example.org/cases/0000",
    "link": "https://so.example.org/reset/token",
    "login_link": "https://so.example.org/login",
    "reset_link": "https://so.example.org/reset",
    "due": "Monday 4 May 2026",
    "refund": True,
    "contact_email": "help@example.org",
    # A records request: whether it went to the patient's doctor, whether it is for materials
    # sent by post, and the doctor's upload link with its lifetime in days.
    "provider": True,
    "material": True,
    "upload_url": "https://so.example.org/upload/token",
    "days": 14,
    # Why staff are told of a case, or why a date moved: the services' own fixed sentences.
    "why": "The doctor offered it declined.",
    "moved_on": True,
    # A report is ready, or has a new version (an addendum or a correction).
    "updated": True,
    # The daily digest: fixed headings, references and links.
    "day": "Monday 7 December 2026",
    "headings": [
        {
            "title": "To assign",
            "count": 1,
            "lines": [{"reference": "SO-2026-00042", "link": "https://so.example.org/staff"}],
        }
    ],
}
# test_message.txt is the outbox's own test email (tests/test_notifications.py), sent to no patient.
EXTRA_VALUES = {"test_message.txt": {"name": "outbox test"}}
CANARY = "CANARY-medical-9d41"
MEDICAL_CONTEXT = {
    name: f"{CANARY}-{name}"
    for name in (
        "diagnosis",
        "intake",
        "questions",
        "decline_reason",
        "reason",
        "subject_name",
        "full_name",
        "findings",
        "report",
        "case",
        "patient",
        "specialty",
        "filename",
    )
}


def test_email_templates_use_only_references_links_and_plain_values(settings) -> None:
    environment = notifications._environment()
    templates = sorted(EMAIL_TEMPLATES.glob("*.txt"))
    assert len(templates) >= 9
    for path in templates:
        allowed = {**ALLOWED_EMAIL_VALUES, **EXTRA_VALUES.get(path.name, {})}
        used = meta.find_undeclared_variables(environment.parse(path.read_text()))
        assert used <= set(allowed), f"{path.name} uses {used - set(allowed)}"
        if path.name.startswith("_"):
            continue  # a layout, rendered through the templates that extend it
        subject, body = notifications.render_email(
            path.stem, {**allowed, **MEDICAL_CONTEXT}, settings
        )
        assert CANARY not in subject + body, path.name

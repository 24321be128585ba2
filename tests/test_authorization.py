"""The authorization matrix (docs/security.md 9): every route × every kind of visitor → status.

A route that is added to the app without a row here fails `test_every_route_is_in_the_matrix`.
Objects that belong to someone else answer 404 (never 403), so their existence is not revealed.
Rows for patient B / other doctor arrive with the first patient-owned objects (cases).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from httpx import AsyncClient
from litestar import Litestar

from core.app import create_app
from core.assignment.tables import Offer
from core.cases import readers
from core.cases import service as cases
from core.cases.tables import Case
from core.completeness.tables import MaterialArrival, RecordsRequest
from core.documents import links, resumable
from core.documents.service import store_upload
from core.payments import service as payments
from core.payments.tables import Payment
from core.reviews.tables import ColleagueInvite
from core.settings import Settings
from tests.conftest import make_settings, open_client, use_settings
from tests.support import csrf_token, make_person, post_form, sign_in

# "patient" owns the case used in case routes; "other_patient" is patient B; the case is
# assigned to "assigned_doctor", not to "doctor".
VISITORS = (
    "anonymous",
    "patient",
    "other_patient",
    "doctor",
    "assigned_doctor",
    "coordinator",
    "admin",
)
PUBLIC = dict.fromkeys(VISITORS, 200)


def only(role: str, ok: int = 200, anonymous: int = 303, others: int = 403) -> dict[str, int]:
    """A page for one role: anonymous visitors are sent to sign in, other roles refused."""
    return {v: ok if v == role else anonymous if v == "anonymous" else others for v in VISITORS}


def patients(status: int) -> dict[str, int]:
    return {"patient": status, "other_patient": status}


def owner_only(ok: int, anonymous: int = 303) -> dict[str, int]:
    """A patient's own case: patient B gets 404 (it does not exist for them), staff 403."""
    return {**only("patient", ok, anonymous=anonymous), "other_patient": 404}


def signed_in(ok: int = 200, anonymous: int = 303) -> dict[str, int]:
    return {v: anonymous if v == "anonymous" else ok for v in VISITORS}


# (method, route path as declared) → expected status per visitor. Bodies are empty forms, so a
# permitted POST answers 400 (the form's errors) or 303 (done, or nothing to do).
MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/static/{file_path:path}"): PUBLIC,
    ("GET", "/dashboard"): signed_in(),
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): dict.fromkeys(VISITORS, 400),
    ("GET", "/login/code"): dict.fromkeys(VISITORS, 303),  # only between password and code
    ("POST", "/login/code"): dict.fromkeys(VISITORS, 401),
    ("POST", "/logout"): dict.fromkeys(VISITORS, 303),
    ("GET", "/register"): PUBLIC,
    ("POST", "/register"): dict.fromkeys(VISITORS, 400),
    ("GET", "/register/check-email"): PUBLIC,
    ("GET", "/verify-email/{token:str}"): PUBLIC,
    ("POST", "/verify-email/{token:str}"): dict.fromkeys(VISITORS, 303),
    ("POST", "/account/verify-email/resend"): signed_in(303, anonymous=401),
    ("GET", "/reset"): PUBLIC,
    ("POST", "/reset"): dict.fromkeys(VISITORS, 400),
    ("GET", "/reset/{token:str}"): dict.fromkeys(VISITORS, 303),  # unknown token
    ("POST", "/reset/{token:str}"): dict.fromkeys(VISITORS, 303),  # unknown token
    # Checking a report (core/pages/verify.py): public; an empty form lacks the number (400).
    ("GET", "/verify"): PUBLIC,
    ("POST", "/verify"): dict.fromkeys(VISITORS, 400),
    ("GET", "/account"): signed_in(),
    ("POST", "/account/profile"): signed_in(400, anonymous=401),
    ("POST", "/account/password"): signed_in(400, anonymous=401),
    ("POST", "/account/sign-out-everywhere"): signed_in(303, anonymous=401),
    # Staff are enrolled (sent back to /account); the test patient is not, so sees the set-up.
    ("GET", "/account/two-factor"): {**signed_in(303), **patients(200)},
    ("POST", "/account/two-factor"): {**signed_in(303, anonymous=401), **patients(400)},
    # The test patients have no two-factor yet: sent to set it up.
    ("POST", "/account/two-factor/recovery-codes"): {
        **signed_in(200, anonymous=401),
        **patients(303),
    },
    ("POST", "/account/two-factor/disable"): signed_in(303, anonymous=401),
    ("GET", "/admin/staff"): only("admin"),
    ("GET", "/admin/staff/new"): only("admin"),
    ("POST", "/admin/staff/new"): only("admin", 400, anonymous=401),
    ("GET", "/admin/staff/{uid:str}"): only("admin"),
    ("POST", "/admin/staff/{uid:str}"): only("admin", 400, anonymous=401),
    ("POST", "/admin/staff/{uid:str}/disable"): only("admin", 303, anonymous=401),
    ("POST", "/admin/staff/{uid:str}/enable"): only("admin", 303, anonymous=401),
    # A doctor's reviewing settings and out-of-office days (the matrix's staff member is a
    # doctor); an empty form lacks the answers (400); nobody's range is not found (404).
    ("POST", "/admin/staff/{uid:str}/reviewing"): only("admin", 400, anonymous=401),
    ("POST", "/admin/staff/{uid:str}/away"): only("admin", 400, anonymous=401),
    ("POST", "/admin/staff/{uid:str}/away/{away:str}/remove"): only("admin", 404, anonymous=401),
    # What needs a staff member, and their message settings (an empty form lacks the hour).
    ("GET", "/attention"): {
        **only("coordinator"),
        "doctor": 200,
        "assigned_doctor": 200,
        "admin": 200,
    },
    ("GET", "/account/messages"): {
        **only("coordinator"),
        "doctor": 200,
        "assigned_doctor": 200,
        "admin": 200,
    },
    ("POST", "/account/messages"): {
        **only("coordinator", 400, anonymous=401),
        "doctor": 400,
        "assigned_doctor": 400,
        "admin": 400,
    },
    ("GET", "/admin/jobs"): only("admin"),
    ("POST", "/admin/jobs/{name:str}/run"): only("admin", 303, anonymous=401),
    ("GET", "/admin/plugins"): only("admin"),
    ("GET", "/admin/audit"): only("admin"),
    ("GET", "/requests/new"): {**only("patient"), "other_patient": 200},
    ("POST", "/requests/new"): {**only("patient", 400, anonymous=401), "other_patient": 400},
    ("GET", "/requests/{uid:str}/{step:str}"): owner_only(200),
    ("POST", "/requests/{uid:str}/{step:str}"): owner_only(400, anonymous=401),
    ("POST", "/requests/{uid:str}/{step:str}/autosave"): owner_only(200, anonymous=401),
    ("POST", "/requests/{uid:str}/submit"): owner_only(400, anonymous=401),
    # Cancelling asks first: the confirmation page; an empty form (no confirm) is sent there.
    ("GET", "/requests/{uid:str}/cancel"): owner_only(200),
    ("POST", "/requests/{uid:str}/cancel"): owner_only(303, anonymous=401),
    ("GET", "/cases/{uid:str}"): owner_only(200),
    # Records: the owner, coordinators, admins and the assigned doctor read them; any other
    # doctor gets 404.
    ("POST", "/cases/{uid:str}/documents"): {
        **owner_only(400, anonymous=401),  # an empty form: "Please choose a file"
        "doctor": 404,
        "assigned_doctor": 409,  # may read, but only the patient adds records
        "coordinator": 409,
        "admin": 409,
    },
    # Resumable uploads: only the owning patient; staff may read the case but add nothing.
    ("POST", "/cases/{uid:str}/uploads"): {
        **owner_only(400, anonymous=401),  # an empty form: "Please choose a file"
        "doctor": 404,
        "assigned_doctor": 409,
        "coordinator": 409,
        "admin": 409,
    },
    ("GET", "/cases/{uid:str}/uploads/{upload:str}"): {
        **owner_only(200),
        "doctor": 404,
        "assigned_doctor": 409,
        "coordinator": 409,
        "admin": 409,
    },
    ("PUT", "/cases/{uid:str}/uploads/{upload:str}/chunks/{number:int}"): {
        **owner_only(400, anonymous=401),  # an empty body for a chunk of 2 KB: cut short
        "doctor": 404,
        "assigned_doctor": 409,
        "coordinator": 409,
        "admin": 409,
    },
    ("DELETE", "/cases/{uid:str}/uploads/{upload:str}"): {
        **owner_only(204, anonymous=401),
        "doctor": 404,
        "assigned_doctor": 409,
        "coordinator": 409,
        "admin": 409,
    },
    # Provider links: only the owning patient manages them (an empty form makes a link with
    # the defaults); a token that is not a live link is the same 404 for everyone.
    ("POST", "/cases/{uid:str}/links"): owner_only(200, anonymous=401),
    ("POST", "/cases/{uid:str}/links/{link:str}/revoke"): owner_only(303, anonymous=401),
    ("GET", "/cases/{uid:str}/access"): owner_only(200),
    # Report share links (core/pages/shared_report.py): only the owning patient makes and
    # revokes them, anyone else gets 404 (an empty form lacks who it is for: 400; no such
    # share: 404); a token that is not a working link is the same 404 for everyone.
    ("POST", "/cases/{uid:str}/report/shares"): {
        **dict.fromkeys(VISITORS, 404),
        "patient": 400,
        "anonymous": 401,
    },
    ("POST", "/cases/{uid:str}/report/shares/{share:str}/revoke"): {
        **dict.fromkeys(VISITORS, 404),
        "anonymous": 401,
    },
    ("GET", "/shared/{token:str}"): dict.fromkeys(VISITORS, 404),
    ("POST", "/shared/{token:str}/code"): dict.fromkeys(VISITORS, 404),
    ("GET", "/shared/{token:str}/pdf"): dict.fromkeys(VISITORS, 404),
    ("GET", "/shared/{token:str}/documents/{doc:str}"): dict.fromkeys(VISITORS, 404),
    ("GET", "/upload/{token:str}"): dict.fromkeys(VISITORS, 404),
    ("POST", "/upload/{token:str}"): dict.fromkeys(VISITORS, 404),
    ("POST", "/upload/{token:str}/uploads"): dict.fromkeys(VISITORS, 404),
    ("GET", "/upload/{token:str}/uploads/{upload:str}"): dict.fromkeys(VISITORS, 404),
    ("PUT", "/upload/{token:str}/uploads/{upload:str}/chunks/{number:int}"): dict.fromkeys(
        VISITORS, 404
    ),
    ("DELETE", "/upload/{token:str}/uploads/{upload:str}"): dict.fromkeys(VISITORS, 404),
    ("GET", "/cases/{uid:str}/documents/{doc:str}"): {
        **owner_only(200),
        "doctor": 404,
        "assigned_doctor": 200,
        "coordinator": 200,
        "admin": 200,
    },
    # A whole imaging study: the download's reader check comes first (others 404, no study
    # looked up), but the matrix's document is a PDF, not a file of a DICOM study, so readers
    # get 404 too. Readers' 200 with a real study: tests/test_study_download.py.
    ("GET", "/cases/{uid:str}/documents/{doc:str}/study"): {
        **owner_only(404),
        "doctor": 404,
        "assigned_doctor": 404,
        "coordinator": 404,
        "admin": 404,
    },
    # Previews follow the download's rules (the matrix's document is a PDF, so it can be shown).
    ("GET", "/cases/{uid:str}/documents/{doc:str}/view"): {
        **owner_only(200),
        "doctor": 404,
        "assigned_doctor": 200,
        "coordinator": 200,
        "admin": 200,
    },
    ("GET", "/cases/{uid:str}/documents/{doc:str}/preview"): {
        **owner_only(200),
        "doctor": 404,
        "assigned_doctor": 200,
        "coordinator": 200,
        "admin": 200,
    },
    # Payments. The matrix's case is a draft: paying it is refused (409); its one payment
    # (made in the fixture) is paid, so its receipt exists.
    ("POST", "/cases/{uid:str}/payments"): owner_only(409, anonymous=401),
    # The patient answers a coordinator's open request (the answer is optional).
    ("POST", "/cases/{uid:str}/requests/{ask:str}/answer"): owner_only(303, anonymous=401),
    ("GET", "/cases/{uid:str}/payments/{payment:str}/receipt"): {
        **owner_only(200),
        "doctor": 404,
        "assigned_doctor": 404,  # payments are not the reviewer's business
        "coordinator": 200,
        "admin": 200,
    },
    # The matrix's case has no report: 404 for every reader (who reads a report, and what they
    # see before it is released, is tested in test_reports.py on a signed case).
    ("GET", "/cases/{uid:str}/report"): signed_in(404),
    ("GET", "/cases/{uid:str}/report/versions/{version:int}"): signed_in(404),
    ("GET", "/cases/{uid:str}/report/versions/{version:int}/pdf"): signed_in(404),
    ("GET", "/payments/sandbox/{payment:str}"): owner_only(303),  # paid: back to the case
    ("POST", "/payments/sandbox/{payment:str}"): owner_only(303, anonymous=401),
    ("POST", "/payments/webhooks/{provider:str}"): dict.fromkeys(VISITORS, 400),  # unsigned
    ("GET", "/staff/cases"): {**only("coordinator"), "admin": 200},
    ("GET", "/staff/cases/{uid:str}"): {**only("coordinator"), "admin": 200},
    # A draft has no fee: nothing to record (409); declining needs a reason (400).
    ("POST", "/staff/cases/{uid:str}/payments"): {
        **only("coordinator", 409, anonymous=401),
        "admin": 409,
    },
    ("POST", "/staff/cases/{uid:str}/decline"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    ("POST", "/staff/cases/{uid:str}/refunds"): {
        **only("coordinator", 409, anonymous=401),
        "admin": 409,
    },
    ("POST", "/staff/cases/{uid:str}/payments/{payment:str}/refunded"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    # Asking needs a message, closing an outcome, an arrival what arrived, a return the
    # courier's reference (400).
    ("POST", "/staff/cases/{uid:str}/requests"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    ("POST", "/staff/cases/{uid:str}/requests/{ask:str}/close"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    ("POST", "/staff/cases/{uid:str}/materials"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    ("POST", "/staff/cases/{uid:str}/materials/{arrival:str}/returned"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    # Offering a draft is refused (409); moving needs a reason (400).
    ("POST", "/staff/cases/{uid:str}/offer"): {
        **only("coordinator", 409, anonymous=401),
        "admin": 409,
    },
    ("POST", "/staff/cases/{uid:str}/move"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    # The case is offered to "assigned_doctor": any other doctor gets 404 (audited); an empty
    # answer lacks the declaration or the reason (400).
    ("GET", "/doctor/cases/{uid:str}"): {**only("assigned_doctor"), "doctor": 404},
    ("POST", "/doctor/cases/{uid:str}/accept"): {
        **only("assigned_doctor", 400, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/decline"): {
        **only("assigned_doctor", 400, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/hand-back"): {
        **only("assigned_doctor", 400, anonymous=401),
        "doctor": 404,
    },
    # The doctor's questions to the patient (core/pages/doctor_requests.py): only the doctor
    # the case is with; an empty question is refused (400) before the state is looked at.
    ("GET", "/doctor/cases/{uid:str}/requests"): {**only("assigned_doctor"), "doctor": 404},
    ("POST", "/doctor/cases/{uid:str}/requests"): {
        **only("assigned_doctor", 400, anonymous=401),
        "doctor": 404,
    },
    # The review workspace (core/pages/review.py): only the doctor the case is with; the case
    # here is offered, not accepted, so its doctor is sent to the case page to accept it first
    # (autosave, an htmx call, answers 409). tests/test_review.py covers the accepted case.
    ("GET", "/doctor/cases/{uid:str}/review"): {**only("assigned_doctor", 303), "doctor": 404},
    ("POST", "/doctor/cases/{uid:str}/review"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/autosave"): {
        **only("assigned_doctor", 409, anonymous=401),
        "doctor": 404,
    },
    ("GET", "/doctor/cases/{uid:str}/review/sign"): {
        **only("assigned_doctor", 303),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/sign"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/urgent"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/communications"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    # After the report (the matrix's case is only offered: the assigned doctor is sent back to
    # the case; who may add to or correct a signed report is tested in test_reports.py).
    ("POST", "/doctor/cases/{uid:str}/review/addendum"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/amend"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/amend/cancel"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/hold"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    # Urgent findings on the staff case page: nothing to take in hand here (409); an empty
    # conversation is refused with its field errors (400).
    ("POST", "/staff/cases/{uid:str}/urgent/in-hand"): {
        **only("coordinator", 409, anonymous=401),
        "admin": 409,
    },
    ("POST", "/staff/cases/{uid:str}/communications"): {
        **only("coordinator", 400, anonymous=401),
        "admin": 400,
    },
    # A colleague's opinion: the reviewing doctor invites (the case is only offered here, so
    # its doctor is sent to accept it first); the invited colleague reads and answers.
    ("POST", "/doctor/cases/{uid:str}/review/colleagues"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("POST", "/doctor/cases/{uid:str}/review/colleagues/{invite:str}/withdraw"): {
        **only("assigned_doctor", 303, anonymous=401),
        "doctor": 404,
    },
    ("GET", "/doctor/consults/{invite:str}"): {
        **only("doctor", 404),
        "assigned_doctor": 404,
    },
    ("POST", "/doctor/consults/{invite:str}"): {
        **only("doctor", 404, anonymous=401),
        "assigned_doctor": 404,
    },
    ("GET", "/doctor/settings"): {**only("doctor"), "assigned_doctor": 200},
    ("POST", "/doctor/settings"): {**only("doctor", 400, anonymous=401), "assigned_doctor": 400},
    ("POST", "/doctor/settings/away"): {
        **only("doctor", 400, anonymous=401),
        "assigned_doctor": 400,
    },
    # Nobody's range: not found for doctors (a doctor removes only their own).
    ("POST", "/doctor/settings/away/{away:str}/remove"): {
        **only("doctor", 404, anonymous=401),
        "assigned_doctor": 404,
    },
    ("GET", "/admin/fees"): only("admin"),
    ("POST", "/admin/fees"): only("admin", 400, anonymous=401),
    ("GET", "/admin/fees/{rule:str}"): only("admin"),
    ("POST", "/admin/fees/{rule:str}"): only("admin", 400, anonymous=401),
}


# The invited colleague (a doctor with a read-only grant on the case, docs/security.md 29) is
# any other doctor (the rows' "doctor"), except here: they read the records as the case's
# doctor does (and, like them, add none), and they open and answer their invitation.
AS_COLLEAGUE = {
    ("GET", "/cases/{uid:str}/documents/{doc:str}"): 200,
    ("GET", "/cases/{uid:str}/documents/{doc:str}/view"): 200,
    ("GET", "/cases/{uid:str}/documents/{doc:str}/preview"): 200,
    ("POST", "/cases/{uid:str}/documents"): 409,
    ("POST", "/cases/{uid:str}/uploads"): 409,
    ("GET", "/cases/{uid:str}/uploads/{upload:str}"): 409,
    ("PUT", "/cases/{uid:str}/uploads/{upload:str}/chunks/{number:int}"): 409,
    ("DELETE", "/cases/{uid:str}/uploads/{upload:str}"): 409,
    ("GET", "/doctor/consults/{invite:str}"): 200,
    ("POST", "/doctor/consults/{invite:str}"): 400,
}


def declared_routes(app: Litestar) -> set[tuple[str, str]]:
    """(method, path as declared) for every HTTP route; Litestar keeps "{token:str}" in `path`."""
    found = set()
    for route in app.routes:
        for method in getattr(route, "methods", None) or ():
            if method not in {"HEAD", "OPTIONS"}:
                found.add((method, route.path))
    return found


def test_every_route_is_in_the_matrix(tmp_path) -> None:
    app = create_app(make_settings(tmp_path, None))
    assert declared_routes(app) == set(MATRIX)


def concrete(path: str, ids: dict[str, str]) -> str:
    return (
        path.replace("{file_path:path}", "app.css")
        .replace("{token:str}", "no-such-token-" + "x" * 30)
        .replace("/requests/{uid:str}", "/requests/" + ids["case"])
        .replace("/cases/{uid:str}", "/cases/" + ids["case"])
        .replace("{payment:str}", ids["payment"])
        .replace("{provider:str}", "sandbox")
        .replace("{rule:str}", ids["rule"])
        .replace("{doc:str}", ids["document"])
        .replace("{link:str}", ids["link"])
        .replace("{share:str}", "00000000-0000-4000-8000-000000000000")
        .replace("{upload:str}", ids["upload"])
        .replace("{number:int}", "0")
        .replace("{version:int}", "1")
        .replace("{away:str}", "00000000-0000-4000-8000-000000000000")
        .replace("{step:str}", "subject")
        .replace("{ask:str}", ids["ask"])
        .replace("{name:str}", "purge_abandoned_uploads")
        .replace("{arrival:str}", ids["arrival"])
        .replace("{invite:str}", ids["invite"])
        .replace("{uid:str}", ids["staff"])
    )


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    # Generous per-IP limit: the matrix itself sends many sign-in-page POSTs from one address.
    result = make_settings(tmp_path, database_url, login_rate_per_minute=10_000)
    with use_settings(result):
        yield result


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def visitors(running_app: Litestar) -> AsyncIterator[dict[str, AsyncClient]]:
    people = {
        "patient": await make_person("patient", "matrix-patient@example.com"),
        "other_patient": await make_person("patient", "matrix-other@example.com"),
        "doctor": await make_person("doctor", "matrix-doctor@example.com"),
        "assigned_doctor": await make_person("doctor", "matrix-assigned@example.com"),
        "coordinator": await make_person("coordinator", "matrix-coord@example.com"),
        "admin": await make_person("admin", "matrix-admin@example.com"),
    }
    colleague = await make_person("doctor", "matrix-colleague@example.com")
    target = await make_person("doctor", "matrix-target@example.com")
    general = running_app.state.plugins.specialty("general")
    case = await cases.start_request(people["patient"].user, general, ip=None)
    # Set directly: the case stays a draft for the request rows, offered to "assigned_doctor"
    # (routing and answers on received cases are tested in test_assignment.py).
    case.assigned_doctor = people["assigned_doctor"].user.id
    await Case.update({Case.assigned_doctor: case.assigned_doctor}).where(Case.id == case.id)
    await Offer.insert(
        Offer(
            case=case.id,
            doctor=case.assigned_doctor,
            status="offered",
            respond_by=datetime.now(UTC) + timedelta(days=1),
        )
    )
    document = await store_upload(
        running_app.state.records,
        case,
        filename="letter.pdf",
        chunks=_chunks(b"%PDF-1.7\n" + b"x" * 2048),
        uploader=people["patient"].user,
    )
    link, token = await links.create_link(people["patient"].user, case, ip=None)
    upload = await resumable.start(
        running_app.state.records, case, filename="scan.pdf", size=2048, uploader=None
    )
    paid = Payment(
        case=case.id,
        provider="sandbox",
        status="succeeded",
        currency="PKR",
        amount_minor=450_000,
        idempotency_key=f"matrix-{case.uid}",
        method="Test card",
        receipt_number="R-2026-99999",
        paid_at=datetime.now(UTC),
    )
    await Payment.insert(paid)
    rule = (await payments.fee_rules())[0]
    # Rows as a coordinator's request and a package's arrival leave them (the service refuses
    # both on a draft; they are tested in test_completeness.py).
    ask = RecordsRequest(uid=uuid.uuid4(), case=case.id, message="The last page", status="open")
    await RecordsRequest.insert(ask)
    arrival = MaterialArrival(
        uid=uuid.uuid4(), case=case.id, material="slides", count=2, arrived_on=date.today()
    )
    await MaterialArrival.insert(arrival)
    # Invited as the reviewing doctor's colleague (tested through the pages in test_review.py).
    invite = ColleagueInvite(
        uid=uuid.uuid4(), case=case.id, colleague=colleague.user.id, question="Agree?"
    )
    await ColleagueInvite.insert(invite)
    await readers.grant(case, colleague.user, people["assigned_doctor"].user)
    ids = {
        "invite": str(invite.uid),
        "ask": str(ask.uid),
        "arrival": str(arrival.uid),
        "payment": str(paid.uid),
        "rule": str(rule.uid),
        "staff": str(target.user.uid),
        "case": str(case.uid),
        "document": str(document.uid),
        "link": str(link.uid),
        "upload": str(upload.uid),
        "token": token,  # a live provider link, for tests that need to reach its handlers
    }
    clients: dict = {"_ids": ids}
    people["colleague"] = colleague
    for name in (*VISITORS, "colleague"):
        client = open_client(running_app)
        if name in people:
            await sign_in(client, people[name])
        else:
            await client.get("/login")
        clients[name] = client
    yield clients
    for name in (*VISITORS, "colleague"):
        await clients[name].aclose()


async def test_authorization_matrix(visitors) -> None:
    ids = visitors["_ids"]
    failures = []
    # Sign-out rows last: they end the visitor's session.
    last = {
        "/cases/{uid:str}/uploads/{upload:str}": 0.5,  # its DELETE ends the upload
        "/requests/{uid:str}/cancel": 1,
        "/account/sign-out-everywhere": 2,
        "/logout": 3,
    }
    rows = sorted(MATRIX.items(), key=lambda item: last.get(item[0][1], 0))
    for (method, path), row in rows:
        expected = {**row, "colleague": AS_COLLEAGUE.get((method, path), row["doctor"])}
        for visitor in (*VISITORS, "colleague"):
            client = visitors[visitor]
            url = concrete(path, ids)
            if method == "GET":
                response = await client.get(url, follow_redirects=False)
            elif method in ("PUT", "DELETE"):
                response = await client.request(
                    method, url, headers={"x-csrftoken": csrf_token(client)}
                )
            else:
                response = await post_form(client, url, {})
            if response.status_code != expected[visitor]:
                got, want = response.status_code, expected[visitor]
                failures.append(f"{method} {url} as {visitor}: {got}, expected {want}")
            if path == "/admin/staff/{uid:str}/disable" and response.status_code == 303:
                await post_form(
                    visitors["admin"], concrete("/admin/staff/{uid:str}/enable", ids), {}
                )
    assert not failures, "\n".join(failures)


async def test_denied_access_is_audited(client) -> None:
    from core.audit.tables import AuditEvent

    patient = await make_person("patient", "curious@example.com")
    await sign_in(client, patient)
    assert (await client.get("/admin/staff")).status_code == 403
    row = await AuditEvent.objects().where(AuditEvent.action == "access.denied").first()
    assert row is not None
    assert row.actor_uid == str(patient.user.uid) and row.outcome == "denied"
    assert "GET /admin/staff" in row.details

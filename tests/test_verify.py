"""`/verify` (core/pages/verify.py, core/reports/verification.py; docs/security.md 27): anyone
checks a report's number with its PDF or the PDF's SHA-256. The current version, a superseded
one (with the later version and its date), a changed file, an unknown number (the same answer
as a changed file), no medical data in any answer, form errors that keep what was typed, the
per-address limit, and an audit row for every check."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from litestar import Litestar

from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases.tables import Case
from core.pages.verify import CHECKS_PER_HOUR, FORM_SLACK, MAX_PDF_BYTES
from core.reports import verification
from core.reports.tables import Report, ReportVersion
from core.reports.verification import Verdict
from core.reviews.tables import SignedReview
from tests.support import csrf_token, make_person, post_form
from tests.test_documents import files_under, record_temp_files

NUMBER = "R-4F6G-8HJK-MNPQ"
UNKNOWN = "R-2222-3333-4444"
SUBJECT = "Zarmina Qureshi-Verifytest"
SIGNER = "Dr Hamid Verifytest"
CANARY = b"CANARY-51c0de-verify-report-findings"

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class Issued:
    first: bytes  # version 1, issued 1 Dec 2026
    second: bytes  # version 2 (current), issued 2 Dec 20:00 UTC = 3 Dec in Karachi
    pending: bytes  # version 3, rendered but not issued
    report_uid: str
    private: list[str]  # what must never appear on /verify


def _pdf(label: str) -> bytes:
    return b"%PDF-1.7\n% " + label.encode() + b"\n" + os.urandom(256) + b"\n%%EOF\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _issue(app: Litestar) -> Issued:
    """A report with two issued versions and a pending third, written directly (the rendering
    and signing that make them are tested with the report service)."""
    patient = await make_person("patient", f"verify-{uuid.uuid4().hex[:8]}@example.com")
    doctor = await make_person("doctor", f"verify-dr-{uuid.uuid4().hex[:8]}@example.com", mfa=False)
    specialty = app.state.plugins.specialty("general")
    case = await cases.start_request(patient.user, specialty, ip=None)
    await Case.update({Case.subject_name: SUBJECT}).where(Case.id == case.id)
    reviews = [
        SignedReview(
            uid=uuid.uuid4(),
            case=case.id,
            sequence=sequence,
            doctor=doctor.user.id,
            specialty=case.specialty,
            form_version=1,
            content="{}",
            content_sha256="0" * 64,
            agreement="agrees",
            signer_name=SIGNER,
            registration_number="12345-P",
            registering_body="Pakistan Medical and Dental Council",
        )
        for sequence in (1, 2, 3)
    ]
    await SignedReview.insert(*reviews)
    report = Report(uid=uuid.uuid4(), case=case.id, number=NUMBER)
    await Report.insert(report)
    first, second, pending = _pdf("one"), _pdf("two"), _pdf("three")
    versions = [
        (1, "report", "issued", first, datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        (2, "amended", "issued", second, datetime(2026, 12, 2, 20, 0, tzinfo=UTC)),
        (3, "addendum", "pending", pending, None),
    ]
    await ReportVersion.insert(
        *[
            ReportVersion(
                uid=uuid.uuid4(),
                report=report.id,
                case=case.id,
                version=version,
                kind=kind,
                review=reviews[version - 1].id,
                status=status,
                sha256=_sha(data),
                issued_at=issued_at,
            )
            for version, kind, status, data, issued_at in versions
        ]
    )
    private = [
        SUBJECT,
        SIGNER,
        patient.user.full_name,
        patient.email,
        case.reference,
        str(case.uid),
        specialty.title,
        "12345-P",
    ]
    return Issued(first, second, pending, str(report.uid), private)


async def _check(client: httpx.AsyncClient, number: str, sha256: str) -> httpx.Response:
    return await post_form(client, "/verify", {"number": number, "sha256": sha256})


async def _upload(
    client: httpx.AsyncClient, number: str, content: bytes, name: str = "report.pdf"
) -> httpx.Response:
    """As the plain form sends it (multipart, the token in the form, no JavaScript header)."""
    if not csrf_token(client):
        await client.get("/verify")
    return await client.post(
        "/verify",
        data={"_csrf_token": csrf_token(client), "number": number},
        files={"file": (name, content, "application/pdf")},
    )


def verdict_of(response: httpx.Response) -> str:
    """The answer block's text, tags and spacing left out."""
    block = response.text.split('<div id="verdict"', 1)[1].split(">", 1)[1].split("<form", 1)[0]
    return " ".join(re.sub(r"<[^>]+>", " ", block).split())


def typed_number(response: httpx.Response) -> str:
    found = re.search(r'name="number" type="text" value="([^"]*)"', response.text)
    assert found, "no number field"
    return found.group(1)


def assert_private(issued: Issued, *responses: httpx.Response) -> None:
    for response in responses:
        for secret in issued.private:
            assert secret not in response.text, secret


async def _verify_events() -> list[dict]:
    rows = await AuditEvent.objects().where(AuditEvent.action == "report.verify")
    return [
        {"outcome": row.outcome, "object_id": row.object_id, "details": json.loads(row.details)}
        for row in sorted(rows, key=lambda row: row.seq)
    ]


# The answers ------------------------------------------------------------------------------------


async def test_the_current_and_a_superseded_version_by_hash_and_by_file(
    running_app: Litestar, client: httpx.AsyncClient
) -> None:
    issued = await _issue(running_app)
    assert (await client.get("/verify")).status_code == 200

    current = await _check(client, NUMBER, _sha(issued.second))
    assert current.status_code == 200
    assert verdict_of(current) == (
        "Authentic: this is the current version Report R-4F6G-8HJK-MNPQ, version 2, issued "
        "3 December 2026. It is exactly as we issued it."
    )
    # Typed loosely: lower case, no dashes, spaces; the hash in capitals.
    loose = await _check(client, " r4f6g 8hjkmnpq ", _sha(issued.second).upper())
    assert verdict_of(loose) == verdict_of(current)

    old = await _check(client, NUMBER, _sha(issued.first))
    assert old.status_code == 200
    assert verdict_of(old) == (
        "Authentic, but superseded This is version 1 of report R-4F6G-8HJK-MNPQ, issued "
        "1 December 2026; version 2 replaced it on 3 December 2026. Ask the sender for the "
        "current version."
    )

    by_file = await _upload(client, NUMBER, issued.second)
    assert by_file.status_code == 200 and verdict_of(by_file) == verdict_of(current)
    old_file = await _upload(client, "4F6G-8HJK-MNPQ", issued.first)
    assert old_file.status_code == 200 and verdict_of(old_file) == verdict_of(old)

    assert_private(issued, current, loose, old, by_file, old_file)
    events = await _verify_events()
    assert [(e["outcome"], e["details"]) for e in events] == [
        ("authentic", {"by": "hash", "version": 2}),
        ("authentic", {"by": "hash", "version": 2}),
        ("superseded", {"by": "hash", "version": 1}),
        ("authentic", {"by": "file", "version": 2}),
        ("superseded", {"by": "file", "version": 1}),
    ]
    assert {e["object_id"] for e in events} == {issued.report_uid}


async def test_a_changed_file_and_an_unknown_number_get_the_same_answer(
    running_app: Litestar, client: httpx.AsyncClient
) -> None:
    issued = await _issue(running_app)
    changed = bytearray(issued.second)
    changed[len(changed) // 2] ^= 0x01
    mismatch = await _check(client, NUMBER, _sha(bytes(changed)))
    assert mismatch.status_code == 200
    assert verdict_of(mismatch) == (
        "Not a report we issued The number and the file do not match any version of a report "
        "from Consilium Hospital. A copy that was changed in any way, even by one character, "
        "does not match."
    )
    changed_file = await _upload(client, NUMBER, bytes(changed))
    # The right file under a number that does not exist, and a wrong file under it.
    unknown = await _check(client, UNKNOWN, _sha(issued.second))
    unknown_wrong = await _check(client, UNKNOWN, _sha(bytes(changed)))
    # A version not issued yet is not a report we issued.
    pending = await _check(client, NUMBER, _sha(issued.pending))
    # Another report's version under this number.
    other_number = await _upload(client, UNKNOWN, issued.first)

    for response in (changed_file, unknown, unknown_wrong, pending, other_number):
        assert response.status_code == mismatch.status_code
        assert verdict_of(response) == verdict_of(mismatch)
    # The service's answers are the same but for the number asked about.
    assert await verification.verify(UNKNOWN.lower(), _sha(issued.second)) == Verdict(UNKNOWN)
    assert await verification.verify(NUMBER.lower(), _sha(bytes(changed))) == Verdict(NUMBER)
    # The same hash under either number: apart from the number typed back into its field, the
    # pages are the same, byte for byte.
    assert unknown_wrong.text.replace(UNKNOWN, "?") == mismatch.text.replace(NUMBER, "?")

    assert_private(issued, mismatch, changed_file, unknown, unknown_wrong, pending, other_number)
    events = await _verify_events()
    assert [e["outcome"] for e in events] == ["no_match"] * 6
    assert all(e["object_id"] is None for e in events)  # nothing says the number exists
    assert {tuple(e["details"]) for e in events} == {("by",)}


# The form ---------------------------------------------------------------------------------------


@sqlite_only
async def test_form_errors_say_what_is_wrong_and_keep_the_number(
    running_app: Litestar, client: httpx.AsyncClient
) -> None:
    issued = await _issue(running_app)
    bad_number = await _check(client, "R-0000-OOOO-1111", _sha(issued.second))
    assert bad_number.status_code == 400
    assert "Enter the report number as printed" in bad_number.text
    assert typed_number(bad_number) == "R-0000-OOOO-1111"
    assert 'id="f-number" name="number"' in bad_number.text and 'aria-invalid="true"' in (
        bad_number.text
    )

    nothing = await _check(client, NUMBER, "")
    assert nothing.status_code == 400 and typed_number(nothing) == NUMBER
    assert "Choose the report&#39;s PDF file, or paste its SHA-256 fingerprint" in nothing.text

    short = await _check(client, NUMBER, "abc123")
    assert short.status_code == 400 and typed_number(short) == NUMBER
    assert "A SHA-256 fingerprint is 64 characters" in short.text
    not_hex = await _check(client, NUMBER, "g" * 64)
    assert not_hex.status_code == 400 and "64 characters" in not_hex.text
    both = await _check(client, "R-0", "abc")  # every problem is said at once
    assert both.status_code == 400 and typed_number(both) == "R-0"
    assert "Enter the report number" in both.text and "64 characters" in both.text

    not_pdf = await _upload(client, NUMBER, b"<html>report</html>", "report.html")
    assert not_pdf.status_code == 400 and typed_number(not_pdf) == NUMBER
    assert "This file is not a PDF" in not_pdf.text

    empty = await _upload(client, NUMBER, b"")
    assert empty.status_code == 400 and "This file is empty" in empty.text

    too_big = await _upload(client, NUMBER, b"%PDF-1.7\n" + b"0" * MAX_PDF_BYTES)
    assert too_big.status_code == 413 and typed_number(too_big) == NUMBER
    assert "This file is larger than 20 MB" in too_big.text

    # A body declared larger than any check: refused before it is read.
    declared = await client.post(
        "/verify",
        content=b"x" * (MAX_PDF_BYTES + FORM_SLACK + 1),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert declared.status_code == 413 and "This file is larger than 20 MB" in declared.text

    # None of these was a check: no verdict shown.
    for response in (bad_number, nothing, short, not_hex, both, not_pdf, empty, too_big, declared):
        assert verdict_of(response) == "" or "Please check" in verdict_of(response)
        assert "Authentic" not in response.text and "Not a report we issued" not in response.text
    events = await _verify_events()
    assert {e["outcome"] for e in events} == {"invalid"}
    assert len(events) == 9

    # The page shown with the errors carries the token: sent again, it is checked.
    token = re.search(r'name="_csrf_token" value="([^"]+)"', too_big.text)
    assert token and token.group(1)
    again = await client.post(
        "/verify",
        data={"_csrf_token": token.group(1), "number": NUMBER, "sha256": _sha(issued.second)},
    )
    assert again.status_code == 200 and "this is the current version" in again.text


@sqlite_only
async def test_a_check_without_the_forms_token_is_refused(
    running_app: Litestar, client: httpx.AsyncClient
) -> None:
    issued = await _issue(running_app)
    await client.get("/verify")
    plain = await client.post("/verify", data={"number": NUMBER, "sha256": _sha(issued.second)})
    assert plain.status_code == 403
    upload = await client.post(
        "/verify",
        data={"number": NUMBER},
        files={"file": ("report.pdf", issued.second, "application/pdf")},
    )
    assert upload.status_code == 403
    forged = await client.post(
        "/verify",
        data={"_csrf_token": "x" * 128, "number": NUMBER, "sha256": _sha(issued.second)},
    )
    assert forged.status_code == 403
    assert await _verify_events() == []


@sqlite_only
async def test_checks_are_limited_per_address(client: httpx.AsyncClient) -> None:
    for _ in range(CHECKS_PER_HOUR):
        assert (await post_form(client, "/verify", {})).status_code == 400
    limited = await post_form(client, "/verify", {"number": NUMBER, "sha256": "0" * 64})
    assert limited.status_code == 429
    assert "Too many checks from your network" in limited.text
    assert 0 < int(limited.headers["retry-after"]) <= 3600
    assert "Authentic" not in limited.text and "Not a report" not in limited.text
    assert len(await _verify_events()) == CHECKS_PER_HOUR  # the refused one did not run
    # The page still opens, and sign-in keeps its own allowance (a key of its own).
    assert (await client.get("/verify")).status_code == 200
    assert (await post_form(client, "/login", {})).status_code == 400


@sqlite_only
async def test_an_uploaded_report_never_touches_the_disk(
    client: httpx.AsyncClient, settings, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A 3 MiB PDF (Litestar's UploadFile would spool it to a temp file): hashed as it streams,
    no temp file made, and its text nowhere under the app's folder (docs/security.md 14)."""
    data = b"%PDF-1.7\n" + CANARY + b"\n" + os.urandom(3 * 1024 * 1024) + CANARY + b"\n%%EOF\n"
    await client.get("/verify")
    calls = record_temp_files(monkeypatch, tmp_path / "temp-files")
    answer = await _upload(client, NUMBER, data)
    monkeypatch.undo()
    assert answer.status_code == 200 and "Not a report we issued" in answer.text
    sessions = str(settings.var_dir / "sessions")  # session records go through mkstemp
    assert [call for call in calls if call != ("mkstemp", sessions)] == []
    assert [path for path in files_under(tmp_path) if CANARY in path.read_bytes()] == []


# Numbers ----------------------------------------------------------------------------------------


def test_report_numbers_are_random_unambiguous_and_fit_the_column() -> None:
    numbers = {verification.new_report_number() for _ in range(500)}
    assert len(numbers) == 500
    for number in numbers:
        assert re.fullmatch(r"R-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}", number)
        assert len(number) <= 20
        assert verification.normalise_number(number) == number
    used = set("".join(numbers).replace("R-", "").replace("-", ""))
    assert not used & set("01OI") and len(used) == 32


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("R-7K3M-9QXD-2HPA", "R-7K3M-9QXD-2HPA"),
        ("r-7k3m-9qxd-2hpa", "R-7K3M-9QXD-2HPA"),
        ("  R 7K3M 9QXD 2HPA\n", "R-7K3M-9QXD-2HPA"),
        ("7K3M9QXD2HPA", "R-7K3M-9QXD-2HPA"),
        ("R7K3M–9QXD—2HPA", "R-7K3M-9QXD-2HPA"),  # dashes from a word processor
        ("R7K3M9QXD2HPA", "R-7K3M-9QXD-2HPA"),
        ("RABC-DEFG-HJKL", "R-RABC-DEFG-HJKL"),  # R starts the random part too
        ("R-RABC-DEFG-HJKL", "R-RABC-DEFG-HJKL"),
        ("R-7K3M-9QXD-2HP", None),
        ("R-7K3M-9QXD-2HPAX", None),
        ("R-7K3M-9QXD-2HP0", None),  # no zero in any number
        ("R-7K3M-9QXD-2HPO", None),
        ("X-7K3M-9QXD-2HPA", None),
        ("", None),
        (None, None),
    ],
)
def test_numbers_are_read_as_people_type_them(typed: str | None, expected: str | None) -> None:
    assert verification.normalise_number(typed) == expected


def test_the_next_higher_version_replaces_a_version_even_when_issued_first() -> None:
    from datetime import UTC, datetime, timedelta

    from core.reports.verification import supersessions

    monday = datetime(2026, 12, 7, 9, tzinfo=UTC)
    # Version 2's render failed and was retried after version 3 was issued.
    issued = {1: monday, 2: monday + timedelta(days=2), 3: monday + timedelta(days=1)}
    assert supersessions(issued) == {
        1: (2, monday + timedelta(days=2)),
        2: (3, monday + timedelta(days=2)),  # replaced the moment it was issued
    }
    assert supersessions({1: monday}) == {}


def test_the_entries_need_a_number_and_one_fingerprint_that_agree() -> None:
    from core.reports.verification import ENTRY_MESSAGES, check_entries

    good, other = "ab" * 32, "cd" * 32
    number, digest, errors = check_entries("r 7k3m 9qxd 2hpa", "", good, {})
    assert (number, digest, errors) == ("R-7K3M-9QXD-2HPA", good, {})
    assert check_entries("R-7K3M-9QXD-2HPA", good.upper(), "", {})[1:] == (good, {})
    assert check_entries("R-7K3M-9QXD-2HPA", other, good, {})[2] == {
        "sha256": ENTRY_MESSAGES["both_differ"]
    }
    assert check_entries("R-7K3M-9QXD-2HPA", "", "", {})[2] == {"file": ENTRY_MESSAGES["missing"]}
    assert check_entries("R-0000", "xyz", "", {})[2] == {
        "number": ENTRY_MESSAGES["number"],
        "sha256": ENTRY_MESSAGES["sha256"],
    }
    # A file refused while reading keeps its own message.
    assert check_entries("R-7K3M-9QXD-2HPA", "", "", {"file": "too big"})[2] == {"file": "too big"}

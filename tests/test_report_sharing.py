"""Sharing the report with the patient's own doctor (core/reports/sharing.py,
core/pages/shared_report.py): a link without an account, optionally behind a 6-digit code that
locks after 5 wrong tries; every opening is a read receipt on the patient's page and an audit
row that never holds the token; a revoked, expired, locked or unknown link is the same 404."""

from __future__ import annotations

import hashlib
import re
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core import clock
from core.accounts.tables import User
from core.audit.tables import AuditEvent
from core.documents.tables import Document
from core.reports import service as reports
from core.reports import sharing
from core.reports.tables import ReportShare, ReportVersion, ShareOpening
from core.web import DATE_FORMAT
from tests.conftest import open_client
from tests.payment_support import with_checkup
from tests.support import Person, make_person, post_form, sign_in
from tests.test_review import COMPLETE, _sign, accepted

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

TOKEN_RE = re.compile(r"/shared/([A-Za-z0-9_-]{43})\b")
CODE_RE = re.compile(r'id="f-new-code" type="text" value="(\d{6})"')
SUMMARY = COMPLETE["patient_summary"]
INVALID = "This link is not valid. Ask the patient for a new one."


@pytest.fixture
def app(app):
    return with_checkup(app)


async def released(running_app) -> tuple[Person, object]:
    """The case's owner and a case whose report is issued and released to them."""
    doctor, case = await accepted(running_app)
    browser = open_client(running_app)
    await sign_in(browser, doctor)
    async with aclosing(browser):
        await _sign(browser, doctor, f"/doctor/cases/{case.uid}/review")
    row = await ReportVersion.objects().where(ReportVersion.case == case.id).first()
    if row.status != reports.ISSUED:
        await reports.produce(row.uid)
        row = await ReportVersion.objects().where(ReportVersion.id == row.id).first()
    assert row.status == reports.ISSUED and row.released_at is not None
    owner = await User.objects().where(User.id == case.patient).first()
    return Person(owner), case


async def make_share(browser, case, **fields: str) -> tuple[str, str | None, str]:
    """(token, code or None, the page) from the patient's share form."""
    data = {"label": "Dr Aslam, City Hospital", "days": "14", **fields}
    made = await post_form(browser, f"/cases/{case.uid}/report/shares", data)
    assert made.status_code == 200, made.text[:2000]
    assert made.headers["referrer-policy"] == "no-referrer"
    token = TOKEN_RE.search(made.text).group(1)
    code = CODE_RE.search(made.text)
    return token, code.group(1) if code else None, made.text


async def panel_of(browser, case) -> str:
    """The patient's share panel (the form shown again after a refused submit lists the links)."""
    page = await post_form(browser, f"/cases/{case.uid}/report/shares", {"label": ""})
    assert page.status_code == 400
    return page.text


def shown_at(at: datetime, settings) -> str:
    return at.astimezone(ZoneInfo(settings.time_zone)).strftime(f"{DATE_FORMAT} %H:%M")


async def test_a_link_without_a_code_opens_the_report_and_its_pdf_and_leaves_a_receipt(
    running_app, settings, monkeypatch
):
    patient, case = await released(running_app)
    [letter] = await Document.select(Document.uid).where(Document.case == case.id)
    browser = open_client(running_app)
    await sign_in(browser, patient)
    doctor = open_client(running_app)  # the patient's own doctor: no account, no session
    async with aclosing(browser), aclosing(doctor):
        token, code, made = await make_share(browser, case)
        assert code is None and "Your link is ready" in made
        assert "Make the link" not in made  # no second link by mistake: the form is not here
        at = datetime(2026, 12, 3, 9, 5, tzinfo=UTC)
        monkeypatch.setattr(clock, "now", lambda: at)
        page = await doctor.get(f"/shared/{token}")
        assert page.status_code == 200
        assert SUMMARY in page.text and "Shared by the patient with you." in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        monkeypatch.undo()
        mine = await browser.get(f"/cases/{case.uid}/report/versions/1/pdf")
        theirs = await doctor.get(f"/shared/{token}/pdf")
        assert theirs.status_code == 200 and theirs.headers["content-type"] == "application/pdf"
        assert theirs.content == mine.content and mine.content.startswith(b"%PDF")
        # Records were not shared: a record's address is the same 404 as a dead link.
        record = await doctor.get(f"/shared/{token}/documents/{letter['uid']}")
        assert record.status_code == 404 and INVALID in record.text
        assert f"/shared/{token}/documents/" not in page.text
        panel = await panel_of(browser, case)
        assert f"Opened {shown_at(at, settings)} (the report)" in panel
        # And in "Who opened your records", with everyone else's readings.
        access = (await browser.get(f"/cases/{case.uid}/access")).text
        shared_rows = [r for r in access.split("<tr>") if "Through a link you shared" in r]
        assert any("Viewed your report" in r for r in shared_rows), shared_rows
        assert any("Downloaded your report" in r for r in shared_rows), shared_rows
        assert "(the report&#39;s PDF)" in panel or "(the report's PDF)" in panel
    openings = await ShareOpening.select(ShareOpening.what).order_by(ShareOpening.id)
    assert [o["what"] for o in openings] == ["report", "pdf"]
    rows = await AuditEvent.select()
    assert not [row for row in rows if token in str(row)]
    [share] = await ReportShare.select(ReportShare.uid, ReportShare.token_hash)
    assert share["token_hash"] != token and len(share["token_hash"]) == 64
    opened = [row for row in rows if row["action"] == "report_share.open"]
    assert len(opened) == 2 and all(str(share["uid"]) in row["details"] for row in opened)
    assert all(row["actor_uid"] is None for row in opened)


async def test_with_records_the_doctor_downloads_them(running_app):
    patient, case = await released(running_app)
    [letter] = await Document.objects().where(Document.case == case.id)
    browser = open_client(running_app)
    await sign_in(browser, patient)
    doctor = open_client(running_app)
    async with aclosing(browser), aclosing(doctor):
        token, _, _ = await make_share(browser, case, include_records="1")
        page = await doctor.get(f"/shared/{token}")
        assert f"/shared/{token}/documents/{letter.uid}" in page.text
        record = await doctor.get(f"/shared/{token}/documents/{letter.uid}")
        assert record.status_code == 200 and record.content.startswith(b"%PDF")
        assert record.headers["referrer-policy"] == "no-referrer"
        missing = await doctor.get(f"/shared/{token}/documents/{'0' * 8}-0000-4000-8000-{'0' * 12}")
        assert missing.status_code == 404


async def test_a_code_hides_everything_until_given_and_five_wrong_codes_lock_the_link(running_app):
    patient, case = await released(running_app)
    browser = open_client(running_app)
    await sign_in(browser, patient)
    doctor, guesser = open_client(running_app), open_client(running_app)
    async with aclosing(browser), aclosing(doctor), aclosing(guesser):
        token, code, made = await make_share(browser, case, with_code="1", include_records="1")
        assert code is not None and "We show it only this once" in made
        stored = await ReportShare.objects().first()
        assert stored.code_hash and code not in stored.code_hash
        assert stored.code_hash != hashlib.sha256(code.encode()).hexdigest()
        page = await doctor.get(f"/shared/{token}")
        assert page.status_code == 200 and "Enter the access code" in page.text
        for hidden in (SUMMARY, case.reference, "Download the signed PDF", "letter.pdf"):
            assert hidden not in page.text, hidden
        assert page.headers["referrer-policy"] == "no-referrer"
        assert (await doctor.get(f"/shared/{token}/pdf")).status_code == 404
        wrong = "000000" if code != "000000" else "111111"
        refused = await post_form(doctor, f"/shared/{token}/code", {"code": wrong})
        assert refused.status_code == 400 and "not right" in refused.text
        assert SUMMARY not in refused.text
        given = await post_form(doctor, f"/shared/{token}/code", {"code": code})
        assert given.status_code == 303 and given.headers["location"] == f"/shared/{token}"
        opened = await doctor.get(f"/shared/{token}")
        assert SUMMARY in opened.text  # remembered in this browser's session
        assert (await doctor.get(f"/shared/{token}/pdf")).status_code == 200
        # Another browser has not given the code: it sees nothing.
        assert SUMMARY not in (await guesser.get(f"/shared/{token}")).text
        # A second link, guessed at: the fifth wrong code locks it, even for the right code.
        locked_token, locked_code, _ = await make_share(browser, case, with_code="1")
        wrong = "000000" if locked_code != "000000" else "111111"
        await guesser.get(f"/shared/{locked_token}")
        for attempt in range(1, 5):
            answer = await post_form(guesser, f"/shared/{locked_token}/code", {"code": wrong})
            assert answer.status_code == 400, attempt
        last = await post_form(guesser, f"/shared/{locked_token}/code", {"code": wrong})
        assert last.status_code == 404 and INVALID in last.text
        late = await post_form(guesser, f"/shared/{locked_token}/code", {"code": locked_code})
        assert late.status_code == 404
        assert (await guesser.get(f"/shared/{locked_token}")).status_code == 404
        # The first link still works for the doctor who gave its code.
        assert SUMMARY in (await doctor.get(f"/shared/{token}")).text
        panel = await panel_of(browser, case)
        assert "Locked after wrong codes" in panel
    locks = await AuditEvent.count().where(AuditEvent.action == "report_share.lock")
    assert locks == 1


async def test_a_revoked_or_expired_link_is_the_same_404_as_an_unknown_one(
    running_app, monkeypatch
):
    patient, case = await released(running_app)
    browser = open_client(running_app)
    await sign_in(browser, patient)
    doctor = open_client(running_app)
    async with aclosing(browser), aclosing(doctor):
        revoked, _, _ = await make_share(browser, case)
        lasting, _, _ = await make_share(browser, case, days="2", label="Dr Khan")
        assert (await doctor.get(f"/shared/{revoked}")).status_code == 200
        share = await ReportShare.objects().where(ReportShare.label == "Dr Aslam, City Hospital")
        url = f"/cases/{case.uid}/report/shares/{share[0].uid}/revoke"
        first = await post_form(browser, url)
        assert first.status_code == 303
        assert first.headers["location"] == f"/cases/{case.uid}/report#share"
        assert (await post_form(browser, url)).status_code == 303  # twice is once
        unknown = await doctor.get("/shared/" + "x" * 43)
        for path in (f"/shared/{revoked}", f"/shared/{revoked}/pdf"):
            gone = await doctor.get(path)
            assert gone.status_code == 404 and INVALID in gone.text
            assert gone.text == unknown.text
        assert (await doctor.get(f"/shared/{lasting}")).status_code == 200
        later = clock.now() + timedelta(days=2, minutes=1)
        monkeypatch.setattr(clock, "now", lambda: later)
        expired = await doctor.get(f"/shared/{lasting}")
        assert expired.status_code == 404 and expired.text == unknown.text
        assert (await doctor.get(f"/shared/{lasting}/pdf")).status_code == 404
        panel = await panel_of(browser, case)
        assert "Revoked" in panel and "Expired" in panel
    revokes = await AuditEvent.count().where(AuditEvent.action == "report_share.revoke")
    assert revokes == 1


async def test_only_the_owning_patient_makes_and_revokes_links(running_app):
    patient, case = await released(running_app)
    other = await make_person("patient", "patient-b@example.com")
    coordinator = await make_person("coordinator", "share-coord@example.com")
    owner, stranger, staff = (open_client(running_app) for _ in range(3))
    await sign_in(owner, patient)
    await sign_in(stranger, other)
    await sign_in(staff, coordinator)
    async with aclosing(owner), aclosing(stranger), aclosing(staff):
        await make_share(owner, case)
        [share] = await ReportShare.objects()
        for visitor in (stranger, staff):
            made = await post_form(
                visitor, f"/cases/{case.uid}/report/shares", {"label": "Dr Evil", "days": "14"}
            )
            assert made.status_code == 404
            revoked = await post_form(
                visitor, f"/cases/{case.uid}/report/shares/{share.uid}/revoke"
            )
            assert revoked.status_code == 404
        assert await ReportShare.count() == 1
        assert (await ReportShare.objects().first()).revoked_at is None
        # A share of another case, named on this one: not found.
        bogus = await post_form(owner, f"/cases/{case.uid}/report/shares/nope/revoke")
        assert bogus.status_code == 404
    denied = await AuditEvent.count().where(AuditEvent.action == "access.denied")
    assert denied >= 5


async def test_bad_entries_show_the_form_again_with_what_was_typed(running_app):
    patient, case = await released(running_app)
    browser = open_client(running_app)
    await sign_in(browser, patient)
    async with aclosing(browser):
        url = f"/cases/{case.uid}/report/shares"
        page = await post_form(
            browser, url, {"label": "Dr Aslam", "days": "91", "include_records": "1"}
        )
        assert page.status_code == 400 and "Choose from 1 to 90 days." in page.text
        assert 'value="Dr Aslam"' in page.text and 'value="91"' in page.text
        assert 'name="include_records" type="checkbox" value="1" checked' in page.text
        empty = await post_form(browser, url, {"label": "  ", "days": "7"})
        assert empty.status_code == 400 and "Say who the link is for" in empty.text
        long = await post_form(browser, url, {"label": "x" * 121, "days": "7"})
        assert long.status_code == 400 and "at most 120 characters" in long.text
    assert await ReportShare.count() == 0


async def test_no_link_before_the_patient_can_read_the_report(running_app):
    _doctor, case = await accepted(running_app)
    owner = await User.objects().where(User.id == case.patient).first()
    with pytest.raises(sharing.ShareRefused):
        await sharing.create(case, owner, {"label": "Dr Aslam"})
    browser = open_client(running_app)
    await sign_in(browser, Person(owner))
    async with aclosing(browser):
        refused = await post_form(
            browser, f"/cases/{case.uid}/report/shares", {"label": "Dr Aslam", "days": "14"}
        )
        assert refused.status_code == 409 and "once it is ready" in refused.text

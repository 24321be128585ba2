"""Provider upload links: a patient's own doctor sends records without an account.

The provider is a second, anonymous browser. A link names only the case reference; its token
is stored hashed, never audited; every dead link (unknown, expired, revoked, used up, case
closed) answers the same 404 page; two uploads racing for the last use store one file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import timedelta

import httpx
import pytest
from litestar import Litestar

from core import clock
from core.accounts.tables import User
from core.audit.tables import AuditEvent
from core.cases import service as cases
from core.cases.tables import Case
from core.documents import links
from core.documents.provider_routes import ROUTES as PROVIDER_ROUTES
from core.documents.tables import Document, ProviderLink
from tests.conftest import open_client
from tests.support import csrf_token, make_person, post_form, sign_in
from tests.test_documents import multipart, text_of, zipped

PDF = b"%PDF-1.7\n" + b"provider letter\n" * 500 + b"%%EOF\n"
PATIENT_NAME = "Farah Canary-Holder"
SUBJECT_NAME = "Zain Canary-Child"
INTAKE_ANSWER = "CANARY-INTAKE-persistent-headaches"
QUESTION = "CANARY-QUESTION-is-surgery-needed"
NO_REFERRER_META = '<meta name="referrer" content="no-referrer">'
TOKEN_RE = re.compile(r"/upload/([A-Za-z0-9_-]{43})\b")


@pytest.fixture
def app(app: Litestar) -> Litestar:
    """The app, with the provider routes registered if the application factory does not yet."""
    declared = {route.path for route in app.routes}
    if "/upload/{token:str}" not in declared:
        for handler in PROVIDER_ROUTES:
            app.register(handler)
    return app


async def patient_case(client: httpx.AsyncClient, running_app: Litestar, email: str):
    """A signed-in patient with a submitted-looking case that holds names and answers."""
    person = await make_person("patient", email)
    await User.update({User.full_name: PATIENT_NAME}).where(User.id == person.user.id)
    general = running_app.state.plugins.specialty("general")
    case = await cases.start_request(person.user, general, ip=None)
    await Case.update(
        {
            Case.status: "submitted",
            Case.subject_kind: "dependant",
            Case.subject_name: SUBJECT_NAME,
            Case.intake: json.dumps({"version": 1, "values": {"history": INTAKE_ANSWER}}),
            Case.draft: json.dumps({"intake": {"history": [INTAKE_ANSWER]}}),
            Case.questions: json.dumps([QUESTION]),
        }
    ).where(Case.id == case.id)
    await sign_in(client, person)
    return person, await cases.get_case(str(case.uid))


async def make_link(client: httpx.AsyncClient, case: Case, **fields: str) -> str:
    data = {"note": "Dr Aslam, City Hospital", "days_valid": "14", "max_uses": "5", **fields}
    response = await post_form(client, f"/cases/{case.uid}/links", data)
    assert response.status_code == 200, response.text
    match = TOKEN_RE.search(response.text)
    assert match, response.text
    return match.group(1)


async def provider_upload(
    provider: httpx.AsyncClient,
    token: str,
    filename: str = "letter.pdf",
    data: bytes = PDF,
    *,
    script: bool = False,
) -> httpx.Response:
    if not csrf_token(provider):
        await provider.get(f"/upload/{token}")
        if not csrf_token(provider):  # a dead link's page sets the cookie too; be sure
            await provider.get("/login")
    fields: list = [] if script else [("_csrf_token", csrf_token(provider))]
    body, content_type = multipart([*fields, ("file", (filename, data, "application/pdf"))])
    headers = {"content-type": content_type}
    if script:
        headers |= {"x-csrftoken": csrf_token(provider), "x-upload-client": "1"}
    return await provider.post(f"/upload/{token}", content=body, headers=headers)


def main_of(html: str) -> str:
    return html.split('<main id="main"', 1)[1].split("</main>", 1)[0]


async def test_provider_sends_records_through_a_link(client, running_app, settings) -> None:
    person, case = await patient_case(client, running_app, "links-owner@example.com")
    token = await make_link(client, case, days_valid="7", max_uses="3")
    created = await client.post(  # shown once: the list afterwards never holds the token
        f"/cases/{case.uid}/links",
        data={"note": "", "days_valid": "1", "max_uses": "1"},
        headers={"x-csrftoken": csrf_token(client)},
    )
    assert created.status_code == 200 and token not in created.text

    # Stored only hashed.
    [link, _] = await ProviderLink.objects().order_by(ProviderLink.id)
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(link.to_dict(), default=str)
    assert link.max_uses == 3 and link.note == "Dr Aslam, City Hospital"
    assert timedelta(days=6, hours=23) < link.expires_at - link.created_at <= timedelta(days=7)

    async with open_client(running_app) as provider:
        shown = await provider.get(f"/upload/{token}")
        assert shown.status_code == 200
        assert case.reference in shown.text and settings.hospital_name in shown.text
        assert "3 more times" in shown.text
        for secret in (
            PATIENT_NAME,
            SUBJECT_NAME,
            INTAKE_ANSWER,
            QUESTION,
            "General second opinion",
        ):
            assert secret not in shown.text
        assert NO_REFERRER_META in shown.text
        assert "data-upload" in shown.text and 'name="file"' in shown.text

        sent = await provider_upload(provider, token, "Clinic <letter>.pdf")
        assert sent.status_code == 200, sent.text
        assert "Thank you" in sent.text and "2 more times" in sent.text
        assert NO_REFERRER_META in sent.text
        for secret in (PATIENT_NAME, SUBJECT_NAME, INTAKE_ANSWER):
            assert secret not in sent.text

        # upload.js gets the same thank-you as HTML (a block of the page) to put in place of
        # the form, not a sentence that ends on a generic banner above the same form.
        # (Other content: the same file again would be recognised and not stored twice.)
        quiet = await provider_upload(provider, token, "scan.pdf", PDF + b"scan\n", script=True)
        assert quiet.status_code == 200 and quiet.headers["content-type"].startswith("text/html")
        said = text_of(quiet.text)
        assert said.startswith("Thank you — your files were received")
        assert f"1 file received for request {case.reference}." in said
        assert "1 more time" in said
        assert "data-upload-region" in quiet.text and "<form" not in quiet.text
        assert "<html" not in quiet.text and NO_REFERRER_META not in quiet.text  # a fragment
        assert quiet.headers["referrer-policy"] == "no-referrer"
        for secret in (PATIENT_NAME, SUBJECT_NAME, INTAKE_ANSWER):
            assert secret not in quiet.text

    docs = await Document.objects().order_by(Document.id)
    assert [d.source for d in docs] == ["provider", "provider"]
    assert all(d.provider_link == link.id and d.uploaded_by is None for d in docs)
    assert all(d.status == "complete" for d in docs)
    assert (await ProviderLink.objects().where(ProviderLink.id == link.id).first()).uses == 2

    # On the patient's case: listed, and the patient downloads what the doctor sent.
    page = (await client.get(f"/cases/{case.uid}")).text
    assert "Clinic &lt;letter&gt;.pdf" in page and "scan.pdf" in page
    got = await client.get(f"/cases/{case.uid}/documents/{docs[0].uid}")
    assert got.status_code == 200 and got.content == PDF

    # Revoke it; then it answers like any dead link.
    revoked = await post_form(client, f"/cases/{case.uid}/links/{link.uid}/revoke")
    assert revoked.status_code == 303
    assert revoked.headers["location"] == f"/cases/{case.uid}?notice=link-revoked#links"
    back = (await client.get(revoked.headers["location"])).text  # said where the eye lands
    assert "The link is revoked" in back.split('id="links"', 1)[1].split("</section>", 1)[0]
    assert "The link is revoked" not in back.split('id="links"', 1)[0]
    async with open_client(running_app) as provider:
        assert (await provider.get(f"/upload/{token}")).status_code == 404

    rows = await AuditEvent.objects().order_by(AuditEvent.seq)
    actions = [row.action for row in rows]
    for action in ("provider_link.create", "provider_link.use", "provider_link.revoke"):
        assert action in actions
    use_rows = [row for row in rows if row.action == "provider_link.use"]
    assert len(use_rows) == 2
    assert all(row.case_id == str(case.uid) and row.actor_uid is None for row in use_rows)
    assert all(row.subject_uid == str(person.user.uid) for row in use_rows)
    everything = json.dumps([row.to_dict() for row in rows], default=str)
    assert token not in everything and link.token_hash not in everything
    assert "Dr Aslam" not in everything  # the note is the patient's free text: not audited


async def test_the_thank_you_counts_the_files_and_lists_what_was_left_out(
    client, running_app
) -> None:
    """Issue 10, items 4 and 6: with or without JavaScript, the provider reads how many files
    arrived, and which files of a ZIP were not kept, and why."""
    _, case = await patient_case(client, running_app, "links-count@example.com")
    token = await make_link(client, case)
    async with open_client(running_app) as provider:
        await provider.get(f"/upload/{token}")
        for script in (False, True):
            # Other content each time: the same files again would be recognised as already here.
            pdf = PDF + str(script).encode()
            archive = zipped(
                {"a.pdf": pdf + b"a", "b.pdf": pdf + b"b", "setup.exe": b"MZ" + b"\0" * 500}
            )
            fields: list = [("_csrf_token", csrf_token(provider))]
            fields += [("file", ("letter.pdf", pdf, "application/pdf"))]
            fields += [("file", ("cd.zip", archive, "application/zip"))]
            body, content_type = multipart(fields)
            headers = {"content-type": content_type}
            if script:
                headers |= {"x-csrftoken": csrf_token(provider), "x-upload-client": "1"}
            sent = await provider.post(f"/upload/{token}", content=body, headers=headers)
            assert sent.status_code == 200, sent.text
            said = text_of(main_of(sent.text) if not script else sent.text)
            assert "Thank you — your files were received" in said, script
            assert f"3 files received for request {case.reference}." in said, script
            assert "We could not keep this file from the ZIP: setup.exe — Programs cannot" in said
    # The patient's timeline says what arrived through the link (item 5), without file names.
    page = (await client.get(f"/cases/{case.uid}")).text
    timeline = text_of(page.split("What has happened", 1)[1].split("</section>", 1)[0])
    sent = "Records sent by a doctor through an upload link"
    assert timeline.count(f"{sent}: 1 file ") == 2, timeline
    assert timeline.count(f"{sent}: 2 files from a ZIP (1 file left out)") == 2, timeline
    assert "letter.pdf" not in timeline and "setup.exe" not in timeline


async def test_every_dead_link_gets_the_same_page(client, running_app) -> None:
    _, case = await patient_case(client, running_app, "links-dead@example.com")
    tokens = {reason: await make_link(client, case) for reason in ("expired", "revoked", "used")}
    tokens["unknown"] = "x" * 43
    [expired, revoked, used] = await ProviderLink.objects().order_by(ProviderLink.id)
    await ProviderLink.update({ProviderLink.expires_at: clock.now() - timedelta(seconds=1)}).where(
        ProviderLink.id == expired.id
    )
    await post_form(client, f"/cases/{case.uid}/links/{revoked.uid}/revoke")
    await ProviderLink.update({ProviderLink.uses: used.max_uses}).where(ProviderLink.id == used.id)

    async with open_client(running_app) as provider:
        await provider.get("/login")  # the CSRF cookie, as any browser would have
        pages = {}
        for reason, token in tokens.items():
            got = await provider.get(f"/upload/{token}")
            assert got.status_code == 404, reason
            assert NO_REFERRER_META in got.text
            pages[reason] = main_of(got.text)
            sent = await provider_upload(provider, token)
            assert sent.status_code == 404, reason
            assert main_of(sent.text) == pages[reason]
            scripted = await provider_upload(provider, token, script=True)
            assert scripted.status_code == 404 and "no longer valid" in scripted.text
        assert len(set(pages.values())) == 1
        assert "This upload link is no longer valid" in pages["unknown"]
        assert "ask the patient for a new one" in pages["unknown"]

        # A case that stopped taking records closes its working links too.
        fresh = await make_link(client, case)
        assert (await provider.get(f"/upload/{fresh}")).status_code == 200
        await Case.update({Case.status: "in_review"}).where(Case.id == case.id)
        closed = await provider.get(f"/upload/{fresh}")
        assert closed.status_code == 404 and main_of(closed.text) == pages["unknown"]
    assert await Document.count() == 0
    assert await ProviderLink.count().where(ProviderLink.uses > ProviderLink.max_uses) == 0


async def test_two_uploads_racing_for_the_last_use_store_one(
    client, running_app, monkeypatch
) -> None:
    _, case = await patient_case(client, running_app, "links-race@example.com")
    token = await make_link(client, case, max_uses="2")
    link = await ProviderLink.objects().first()
    await ProviderLink.update({ProviderLink.uses: 1}).where(ProviderLink.id == link.id)

    # Both requests must be past resolve() (the link still has a use) before either takes it.
    both_resolved, real_use = asyncio.Barrier(2), links.use

    async def use_after_both_resolved(found: ProviderLink, **kwargs) -> bool:
        await asyncio.wait_for(both_resolved.wait(), timeout=10)
        return await real_use(found, **kwargs)

    monkeypatch.setattr(links, "use", use_after_both_resolved)
    async with open_client(running_app) as first, open_client(running_app) as second:
        for provider in (first, second):
            await provider.get(f"/upload/{token}")
        results = await asyncio.gather(
            provider_upload(first, token, "a.pdf"), provider_upload(second, token, "b.pdf")
        )
    monkeypatch.undo()
    assert sorted(r.status_code for r in results) == [200, 404]
    assert "no longer valid" in next(r.text for r in results if r.status_code == 404)
    assert await Document.count() == 1
    assert (await ProviderLink.objects().first()).uses == 2
    uses = await AuditEvent.count().where(AuditEvent.action == "provider_link.use")
    assert uses == 1

    # The same race at the service level, with both requests past resolve().
    other = await make_link(client, case, max_uses="1")
    found_a, found_b = await links.resolve(other), await links.resolve(other)
    assert found_a and found_b
    won = await asyncio.gather(links.use(found_a[0]), links.use(found_b[0]))
    assert sorted(won) == [False, True]
    assert await links.resolve(other) is None


async def test_a_refused_file_gives_its_use_back(client, running_app) -> None:
    _, case = await patient_case(client, running_app, "links-refused@example.com")
    token = await make_link(client, case, max_uses="1")
    async with open_client(running_app) as provider:
        refused = await provider_upload(provider, token, "setup.exe", b"MZ" + b"\0" * 600)
        assert refused.status_code == 415 and "Programs" in refused.text
        assert 'name="file"' in refused.text  # the form again, to try another file
        empty = await provider.post(
            f"/upload/{token}",
            content=multipart([("_csrf_token", csrf_token(provider))])[0],
            headers={"content-type": multipart([])[1]},
        )
        assert empty.status_code == 400 and "choose a file" in empty.text
        forged = await provider.post(
            f"/upload/{token}",
            content=multipart([("file", ("a.pdf", PDF, "application/pdf"))])[0],
            headers={"content-type": multipart([])[1]},
        )
        assert forged.status_code == 403
        assert (await ProviderLink.objects().first()).uses == 0
        sent = await provider_upload(provider, token)
        assert sent.status_code == 200 and "used up" in sent.text
        assert (await provider.get(f"/upload/{token}")).status_code == 404
    assert await Document.count() == 1
    actions = [row["action"] for row in await AuditEvent.select(AuditEvent.action)]
    assert actions.count("provider_link.use") == 2 and "provider_link.release" in actions


async def test_only_the_owner_makes_and_revokes_links(client, running_app) -> None:
    _, case = await patient_case(client, running_app, "links-mine@example.com")
    token = await make_link(client, case)
    link = await ProviderLink.objects().first()
    denied_before = await AuditEvent.count().where(AuditEvent.action == "access.denied")

    async with open_client(running_app) as other:
        await sign_in(other, await make_person("patient", "links-theirs@example.com"))
        data = {"note": "mine now", "days_valid": "30", "max_uses": "20"}
        assert (await post_form(other, f"/cases/{case.uid}/links", data)).status_code == 404
        revoke = f"/cases/{case.uid}/links/{link.uid}/revoke"
        assert (await post_form(other, revoke)).status_code == 404
        # Their own case cannot reach someone else's link either.
        general = running_app.state.plugins.specialty("general")
        theirs = await cases.start_request(
            (await User.objects().where(User.email == "links-theirs@example.com").first()),
            general,
            ip=None,
        )
        crossed = f"/cases/{theirs.uid}/links/{link.uid}/revoke"
        assert (await post_form(other, crossed)).status_code == 404
    for role in ("doctor", "coordinator", "admin"):
        async with open_client(running_app) as staff:
            await sign_in(staff, await make_person(role, f"links-{role}@example.com"))
            assert (await post_form(staff, f"/cases/{case.uid}/links")).status_code == 403
    async with open_client(running_app) as anonymous:
        assert (await post_form(anonymous, f"/cases/{case.uid}/links")).status_code == 401

    assert await ProviderLink.count() == 1
    assert (await ProviderLink.objects().first()).revoked_at is None
    assert await links.resolve(token) is not None
    denied = await AuditEvent.count().where(AuditEvent.action == "access.denied")
    assert denied - denied_before >= 6


async def test_link_form_keeps_entries_and_explains(client, running_app) -> None:
    _, case = await patient_case(client, running_app, "links-form@example.com")
    data = {"note": "Dr <script>x</script>", "days_valid": "31", "max_uses": "zero"}
    response = await post_form(client, f"/cases/{case.uid}/links", data)
    assert response.status_code == 400
    assert "Choose from 1 to 30 days." in response.text
    assert "Choose from 1 to 20 uploads." in response.text
    assert 'value="Dr &lt;script&gt;x&lt;/script&gt;"' in response.text
    assert 'value="31"' in response.text and 'value="zero"' in response.text
    assert await ProviderLink.count() == 0

    # Defaults when the numbers are left empty: 14 days, 5 uploads.
    await make_link(client, case, days_valid="", max_uses="")
    link = await ProviderLink.objects().first()
    assert link.max_uses == 5
    assert timedelta(days=13, hours=23) < link.expires_at - link.created_at <= timedelta(days=14)
    listed = await post_form(client, f"/cases/{case.uid}/links", {"days_valid": "0"})
    assert listed.status_code == 400 and "Dr Aslam, City Hospital" in listed.text

    with pytest.raises(links.InvalidInput):
        await links.create_link(
            (await User.objects().where(User.id == case.patient).first()),
            case,
            note="",
            days_valid=31,
            ip=None,
        )

    await Case.update({Case.status: "cancelled"}).where(Case.id == case.id)
    closed = await post_form(client, f"/cases/{case.uid}/links", {})
    assert closed.status_code == 409 and "can no longer be added" in closed.text
    assert await ProviderLink.count() == 1


async def test_link_pages_send_no_referrer(client, running_app) -> None:
    """Pages whose URL holds a token tell the browser not to pass that URL on (Referer)."""
    _, case = await patient_case(client, running_app, "links-referrer@example.com")
    token = await make_link(client, case)
    async with open_client(running_app) as provider:
        for path in (f"/upload/{token}", "/upload/" + "y" * 43):
            got = await provider.get(path)
            assert got.headers.get("referrer-policy") == "no-referrer", (
                "core.security.security_headers must keep a Referrer-Policy the route set"
            )
            assert got.headers.get("x-robots-tag") == "noindex, nofollow"


async def test_case_page_partial_lists_links(client, running_app) -> None:
    """`documents/_links.html` as the case page includes it: only `case` and `links` given."""
    _, case = await patient_case(client, running_app, "links-partial@example.com")
    await make_link(client, case, note="Dr <b>Aslam</b>")
    await make_link(client, case, note="")
    gone = await ProviderLink.objects().order_by(ProviderLink.id).first()
    await post_form(client, f"/cases/{case.uid}/links/{gone.uid}/revoke")
    template = running_app.template_engine.get_template("documents/_links.html")
    html = template.render(case=case, links=await links.links_of(case))
    assert f'action="/cases/{case.uid}/links"' in html and 'name="days_valid"' in html
    assert "Dr &lt;b&gt;Aslam&lt;/b&gt;" in html and "<b>Aslam" not in html
    assert html.count("/revoke") == 1 and "Revoked" in html and "Active" in html
    await Case.update({Case.status: "closed"}).where(Case.id == case.id)
    closed = await cases.get_case(str(case.uid))
    html = template.render(case=closed, links=await links.links_of(closed))
    assert 'name="days_valid"' not in html and "/revoke" not in html and "Closed" in html


async def test_a_folder_in_batches_takes_one_use_of_the_link(
    client, running_app, monkeypatch
) -> None:
    """upload.js sends a folder in several requests: the first takes the link's use and its
    answer names the upload's group; the later ones name it and take none (issue 12)."""
    from core.documents import upload_stream
    from tests.test_documents import outcome_of

    _, case = await patient_case(client, running_app, "links-batches@example.com")
    token = await make_link(client, case, max_uses="1")
    other_token = await make_link(client, case, max_uses="5")

    async def batch(provider: httpx.AsyncClient, link: str, names: list[str], group: str = ""):
        fields: list = [(upload_stream.GROUP_FIELD, group)] if group else []
        fields += [("file", (n, PDF + n.encode(), "application/pdf")) for n in names]
        body, content_type = multipart(fields)
        headers = {"content-type": content_type, "x-csrftoken": csrf_token(provider)}
        return await provider.post(
            f"/upload/{link}", content=body, headers={**headers, "x-upload-client": "1"}
        )

    async with open_client(running_app) as provider:
        await provider.get(f"/upload/{token}")
        first = await batch(provider, token, ["1.pdf", "2.pdf"])
        assert first.status_code == 200, first.text
        group = outcome_of(first)["group"]
        assert group and token not in group
        # The link's only use is taken; the upload goes on with its group.
        second = await batch(provider, token, ["3.pdf"], group)
        assert second.status_code == 200, second.text
        assert outcome_of(second)["group"]
        # Without the group, or with one made up or of another link, the link is used up.
        assert (await batch(provider, token, ["4.pdf"])).status_code == 404
        forged = f"{group.split('.')[0]}.{'0' * 32}"
        assert (await batch(provider, token, ["4.pdf"], forged)).status_code == 404
        await provider.get(f"/upload/{other_token}")
        elsewhere = outcome_of(await batch(provider, other_token, ["5.pdf"]))["group"]
        assert (await batch(provider, token, ["4.pdf"], elsewhere)).status_code == 404
    [link] = await ProviderLink.objects().where(ProviderLink.max_uses == 1)
    assert link.uses == 1
    assert await Document.count().where(Document.provider_link == link.id) == 3

    # A group ends GROUP_HOURS after the batch that renewed it.
    later = clock.now() + timedelta(hours=links.GROUP_HOURS, minutes=1)
    assert links.continues(link, group)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert not links.continues(link, group)

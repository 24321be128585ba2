"""Accounts through HTTP: registration, verification, sign-in, resets, profile, staff admin."""

from __future__ import annotations

from httpx import AsyncClient

from core import clock
from core.accounts import service as accounts
from core.accounts.tables import AuthToken, User
from core.audit.tables import AuditEvent
from tests.conftest import open_client
from tests.support import PASSWORD, link_in, make_person, post_form, read_mail, sign_in

REGISTRATION = {
    "full_name": "Amina Khan",
    "email": "amina@example.com",
    "password": PASSWORD,
    "phone": "+92 300 1234567",
    "country": "PK",
}


async def test_register_verify_sign_in_and_out(client: AsyncClient, settings) -> None:
    response = await post_form(client, "/register", REGISTRATION)
    assert response.status_code == 303
    assert response.headers["location"] == "/register/check-email"

    [message] = await read_mail(settings)
    assert message["To"] == "amina@example.com"
    path = link_in(message, "/verify-email/")
    assert (await client.get(path)).status_code == 200  # GET shows a button, changes nothing
    user = await accounts.get_user_by_email("amina@example.com")
    assert user is not None and user.email_verified_at is None
    confirmed = await post_form(client, path)
    assert confirmed.headers["location"].startswith("/login")
    user = await accounts.get_user_by_email("amina@example.com")
    assert user is not None and user.email_verified_at is not None
    assert (await post_form(client, path)).headers["location"] == "/login?notice=link-invalid"

    await sign_in(client, await _person(user))
    dashboard = await client.get("/dashboard")
    assert dashboard.status_code == 200 and "My cases" in dashboard.text

    signed_out = await post_form(client, "/logout")
    assert signed_out.status_code == 303
    after = await client.get("/dashboard", follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/login")


async def _person(user: User):
    from tests.support import Person

    return Person(user=user)


async def test_registration_errors_keep_entries(client: AsyncClient) -> None:
    bad = {**REGISTRATION, "email": "not-an-email", "password": "password1", "country": ""}
    response = await post_form(client, "/register", bad)
    assert response.status_code == 400
    page = response.text
    assert "Enter an email address like name@example.com." in page
    assert "one of the most common" in page  # blocklisted password
    assert "Choose the country you live in." in page
    assert 'value="Amina Khan"' in page and 'value="not-an-email"' in page
    assert "password1" not in page  # a password is never echoed back
    assert await User.count() == 0


async def test_registering_a_known_email_reveals_nothing(client: AsyncClient, settings) -> None:
    first = await post_form(client, "/register", REGISTRATION)
    second = await post_form(client, "/register", {**REGISTRATION, "full_name": "Someone Else"})
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    messages = await read_mail(settings)
    assert [m["Subject"] for m in messages] == [
        "Confirm your email address",
        "You already have an account",
    ]
    assert await User.count() == 1


async def test_sign_in_failures_look_the_same_for_unknown_and_known_emails(
    client: AsyncClient,
) -> None:
    await make_person("patient", "known@example.com")
    wrong = await post_form(
        client, "/login", {"email": "known@example.com", "password": "nope-nope"}
    )
    unknown = await post_form(
        client, "/login", {"email": "nobody@example.com", "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 400
    message = "The email or password is not right."
    assert message in wrong.text and message in unknown.text
    reset_known = await post_form(client, "/reset", {"email": "known@example.com"})
    reset_unknown = await post_form(client, "/reset", {"email": "nobody@example.com"})
    assert reset_known.headers["location"] == reset_unknown.headers["location"]


async def test_password_reset_is_single_use_and_ends_sessions(
    running_app, settings, client: AsyncClient
) -> None:
    person = await make_person("patient", "reset@example.com")
    async with open_client(running_app) as other_device:
        await sign_in(other_device, person)
        assert (await other_device.get("/dashboard")).status_code == 200

        await post_form(client, "/reset", {"email": "reset@example.com"})
        reset_mail = [m for m in await read_mail(settings) if m["Subject"] == "Reset your password"]
        path = link_in(reset_mail[0], "/reset/")
        assert (await client.get(path)).status_code == 200
        mismatch = await post_form(
            client, path, {"password": "a new passphrase", "password_again": "other"}
        )
        assert mismatch.status_code == 400 and "not the same" in mismatch.text
        done = await post_form(
            client, path, {"password": "a new passphrase", "password_again": "a new passphrase"}
        )
        assert done.headers["location"] == "/login?notice=password-set"
        again = await post_form(
            client, path, {"password": "another passphrase", "password_again": "another passphrase"}
        )
        assert again.headers["location"] == "/reset?notice=link-invalid"

        # The session on the other device ended with the password change.
        gone = await other_device.get("/dashboard", follow_redirects=False)
        assert gone.status_code == 303
    person.password = "a new passphrase"
    await sign_in(client, person)
    stored = await AuthToken.select(AuthToken.token_hash).first()
    assert stored is not None and len(stored["token_hash"]) == 64  # only the hash is kept
    assert path.rsplit("/", 1)[1] != stored["token_hash"]


async def test_expired_reset_link_is_refused(client: AsyncClient, settings) -> None:
    await make_person("patient", "late@example.com")
    await post_form(client, "/reset", {"email": "late@example.com"})
    path = link_in(next(m for m in await read_mail(settings) if "Reset" in m["Subject"]), "/reset/")
    await AuthToken.update({AuthToken.expires_at: clock.now()}).where(
        AuthToken.purpose == accounts.RESET_PASSWORD
    )
    response = await client.get(path, follow_redirects=False)
    assert response.headers["location"] == "/reset?notice=link-invalid"


async def test_profile_update_and_password_change(client: AsyncClient) -> None:
    person = await make_person("patient", "profile@example.com")
    await sign_in(client, person)
    bad = await post_form(
        client, "/account/profile", {"full_name": "", "phone": "call me", "country": "ZZ"}
    )
    assert bad.status_code == 400
    assert "Enter your full name." in bad.text and 'value="call me"' in bad.text
    ok = await post_form(
        client,
        "/account/profile",
        {"full_name": "New Name", "phone": "+1 555 0100", "country": "US"},
    )
    assert ok.headers["location"] == "/account?notice=profile-saved"
    user = await accounts.get_user_by_email("profile@example.com")
    assert user and (user.full_name, user.phone, user.country) == ("New Name", "+1 555 0100", "US")

    wrong = await post_form(
        client,
        "/account/password",
        {"current_password": "wrong", "new_password": "x" * 10, "new_password_again": "x" * 10},
    )
    assert wrong.status_code == 400 and "current password is not right" in wrong.text
    changed = await post_form(
        client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "a brand new passphrase",
            "new_password_again": "a brand new passphrase",
        },
    )
    assert changed.headers["location"] == "/account?notice=password-changed"
    assert (await client.get("/account")).status_code == 200  # this device stays signed in


async def test_admin_invites_edits_and_disables_staff(
    running_app, client: AsyncClient, settings
) -> None:
    admin = await make_person("admin", "admin@example.com")
    await sign_in(client, admin)
    missing = await post_form(
        client,
        "/admin/staff/new",
        {"email": "dr@example.com", "full_name": "Dr. Who", "role": "doctor", "bio": ""},
    )
    assert missing.status_code == 400 and "at least one specialty" in missing.text
    assert 'value="Dr. Who"' in missing.text
    created = await post_form(
        client,
        "/admin/staff/new",
        {
            "email": "dr@example.com",
            "full_name": "Dr. Who",
            "role": "doctor",
            "specialties": ["radiology", "pathology"],
            "bio": "Consultant radiologist",
        },
    )
    assert created.headers["location"] == "/admin/staff?notice=staff-created"
    doctor = await accounts.get_user_by_email("dr@example.com")
    assert doctor is not None and doctor.password_hash is None
    assert await accounts.doctor_specialties(doctor) == ["pathology", "radiology"]

    # The invitation sets a password; the new doctor must then enrol in two-factor sign-in.
    invite = next(m for m in await read_mail(settings) if m["To"] == "dr@example.com")
    path = link_in(invite, "/reset/")
    async with open_client(running_app) as doctor_client:
        await doctor_client.get(path)
        await post_form(
            doctor_client,
            path,
            {"password": "doctor passphrase", "password_again": "doctor passphrase"},
        )
        login = await post_form(
            doctor_client, "/login", {"email": "dr@example.com", "password": "doctor passphrase"}
        )
        assert login.headers["location"] == "/account/two-factor?notice=mfa-required"
        assert (await doctor_client.get("/dashboard", follow_redirects=False)).status_code == 303

    epoch_before = (await accounts.get_user_by_email("dr@example.com")).session_epoch  # type: ignore[union-attr]
    edit = await post_form(
        client,
        f"/admin/staff/{doctor.uid}",
        {"full_name": "Dr. Who", "role": "coordinator", "bio": ""},
    )
    assert edit.headers["location"] == "/admin/staff?notice=staff-saved"
    doctor = await accounts.get_user_by_email("dr@example.com")
    assert doctor and doctor.role == "coordinator" and doctor.session_epoch == epoch_before + 1
    assert await accounts.doctor_specialties(doctor) == []
    actions = [row["action"] for row in await AuditEvent.select(AuditEvent.action)]
    assert "account.create" in actions and "role.change" in actions

    disabled = await post_form(client, f"/admin/staff/{doctor.uid}/disable")
    assert disabled.headers["location"] == "/admin/staff?notice=staff-disabled"
    assert (await accounts.get_user_by_email("dr@example.com")).is_active is False  # type: ignore[union-attr]
    self_disable = await post_form(client, f"/admin/staff/{admin.user.uid}/disable")
    assert self_disable.headers["location"] == f"/admin/staff/{admin.user.uid}"
    assert (await accounts.get_user_by_email("admin@example.com")).is_active  # type: ignore[union-attr]


async def test_disabling_a_user_ends_their_sessions(running_app, client: AsyncClient) -> None:
    admin = await make_person("admin", "boss@example.com")
    doctor = await make_person("doctor", "doc@example.com")
    async with open_client(running_app) as doctor_client:
        await sign_in(doctor_client, doctor)
        assert (await doctor_client.get("/dashboard")).status_code == 200
        await sign_in(client, admin)
        await post_form(client, f"/admin/staff/{doctor.user.uid}/disable")
        assert (await doctor_client.get("/dashboard", follow_redirects=False)).status_code == 303
        refused = await post_form(
            doctor_client, "/login", {"email": doctor.email, "password": doctor.password}
        )
        assert refused.status_code == 400


def test_cli_seed_demo_creates_staff_once(settings, monkeypatch) -> None:
    from click.testing import CliRunner

    from core.cli import main

    monkeypatch.setenv("CONSILIUM_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("CONSILIUM_SECRET_KEY", settings.secret_key or "")
    if settings.database_url:
        monkeypatch.setenv("DATABASE_URL", settings.database_url)
    runner = CliRunner()
    first = runner.invoke(main, ["seed-demo"])
    assert first.exit_code == 0, first.output
    assert "admin@demo.consilium.example" in first.output
    second = runner.invoke(main, ["seed-demo"])
    assert "already exist" in second.output
    from core import db

    db.configure_database(settings)
    roles = sorted(row["role"] for row in User.select(User.role).run_sync())
    assert roles == ["admin", "coordinator", "doctor", "doctor", "doctor", "doctor"]

"""A patient registers, confirms their email from the real message, signs in and out."""

from __future__ import annotations

import email
import email.policy
import re
import time

from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveServer, screenshot


def wait_for_mail(server: LiveServer, to: str, timeout: float = 10) -> email.message.EmailMessage:
    folder = server.settings.var_dir / "mail"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == to:
                return message
        time.sleep(0.1)
    raise AssertionError(f"no email to {to} within {timeout} s")


def test_patient_registers_verifies_signs_in_and_out(live_server: LiveServer, page: Page) -> None:
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.get_by_role("link", name="Request a second opinion").first.click()

    page.get_by_label("Your full name").fill("Fatima Ahmed")
    page.get_by_label("Email address").fill("fatima@example.com")
    page.get_by_label("Choose a password").fill("short")
    page.get_by_label("Country where you live").select_option("PK")
    page.get_by_role("button", name="Create account").click()
    # Bad input: the form comes back with a message and the entries kept.
    expect(page.get_by_role("alert")).to_contain_text("at least 8 characters")
    expect(page.get_by_label("Your full name")).to_have_value("Fatima Ahmed")
    screenshot(page, "register-error-phone")

    page.get_by_label("Choose a password").fill("tea garden in the rain")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    message = wait_for_mail(live_server, "fatima@example.com")
    assert "Confirm your email" in message["Subject"]
    link = re.search(r"http://\S+/verify-email/\S+", message.get_content())
    assert link, message.get_content()
    page.goto(link.group(0))
    page.get_by_role("button", name="Confirm my email").click()
    expect(page.get_by_role("status")).to_contain_text("email address is confirmed")

    page.get_by_label("Email address").fill("fatima@example.com")
    page.get_by_label("Password").fill("tea garden in the rain")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My cases")).to_be_visible()
    screenshot(page, "dashboard-phone")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    page.goto(live_server.url + "/dashboard")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

"""Test helpers that act as a person would: through HTTP forms, and email read from var/mail."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
from httpx import AsyncClient

from core import clock
from core.accounts import second_factor
from core.accounts import service as accounts
from core.accounts.tables import User
from core.notifications import service as notifications
from core.notifications.tables import PENDING, OutboxMessage
from core.settings import Settings

PASSWORD = "correct horse battery staple"
SPECIALTIES = {"general", "surgical", "pathology", "radiology"}


def csrf_token(client: AsyncClient) -> str:
    for cookie in client.cookies.jar:
        if cookie.name.endswith("csrftoken"):
            return cookie.value or ""
    return ""


async def post_form(
    client: AsyncClient,
    path: str,
    data: dict | list | None = None,
    *,
    csrf: bool = True,
    headers: dict[str, str] | None = None,
):
    """POST a form the way a browser does after loading a page (which sets the CSRF cookie);
    `headers` adds to it (e.g. {"hx-request": "true"} for what htmx sends)."""
    if csrf and not csrf_token(client):
        await client.get("/login")
    headers = {**({"x-csrftoken": csrf_token(client)} if csrf else {}), **(headers or {})}
    return await client.post(path, data=data or {}, headers=headers, follow_redirects=False)


@dataclass
class Person:
    user: User
    password: str = PASSWORD
    totp_secret: str | None = None
    _steps: list[int] = field(default_factory=list)

    @property
    def email(self) -> str:
        return self.user.email

    def next_code(self) -> str:
        """A TOTP code not used before (each 30 s step is accepted once only)."""
        assert self.totp_secret
        totp = pyotp.TOTP(self.totp_secret)
        current = int(time.time() // 30)
        step = max(current, (self._steps[-1] + 1) if self._steps else current)
        assert step <= current + 1, "test used more than one code per time step ahead"
        self._steps.append(step)
        return totp.generate_otp(step)


async def make_person(
    role: str = "patient",
    email_address: str | None = None,
    *,
    mfa: bool | None = None,
    specialties: list[str] | None = None,
    country: str = "PK",
) -> Person:
    """A user created through the service layer; staff get TOTP enrolled unless mfa=False."""
    email_address = email_address or f"{role}-{time.monotonic_ns()}@example.com"
    if role == "patient":
        await accounts.register_patient(
            email=email_address,
            password=PASSWORD,
            full_name=f"Test {role.title()}",
            phone="",
            country=country,
            ip=None,
        )
        user = await accounts.get_user_by_email(email_address)
    else:
        user = await accounts.create_staff(
            email=email_address,
            full_name=f"Test {role.title()}",
            role=role,
            specialties=specialties or (["radiology"] if role == "doctor" else []),
            known_specialties=SPECIALTIES,
            by=None,
            password=PASSWORD,
        )
    assert user is not None
    person = Person(user=user)
    if mfa if mfa is not None else role != "patient":
        secret = second_factor.new_secret()
        previous = int(time.time() // 30) - 1
        assert await second_factor.enable(
            user, secret, pyotp.TOTP(secret).generate_otp(previous), ip=None
        )
        person.totp_secret = secret
    person.user = await accounts.get_user(str(user.uid))  # type: ignore[assignment]
    return person


async def sign_in(client: AsyncClient, person: Person) -> None:
    response = await post_form(
        client, "/login", {"email": person.email, "password": person.password}
    )
    assert response.status_code == 303, response.text
    if response.headers["location"].startswith("/login/code"):
        response = await post_form(client, "/login/code", {"code": person.next_code()})
        assert response.status_code == 303, response.text
    assert not response.headers["location"].startswith("/login"), response.headers["location"]


async def read_mail(settings: Settings) -> list[email.message.EmailMessage]:
    """Deliver what is due from the outbox (to var/mail/) and return every message so far.

    Runs the worker's jobs first (queued password resets become emails). The app's own worker
    may hold a claim on a message for a moment: wait until none is pending.
    """
    while await accounts.send_password_resets():
        pass
    # One deliverer at a time: when the app's worker runs in this process, it sends and this
    # waits. Two deliverers raced when a test moved the clock forward: a claim the worker made
    # before the move looked expired after it, and both sent the message.
    by_hand = not notifications.local_workers()
    notifications.wake_workers()
    # Wait for what is due now (a loaded machine can take seconds); a message queued at a
    # later time than a test's frozen clock is not due, and not waited for.
    for _ in range(300):
        if by_hand:
            await notifications.deliver_due(settings)
        due = (OutboxMessage.status == PENDING) & (OutboxMessage.next_attempt_at <= clock.now())
        if not await OutboxMessage.exists().where(due):
            break
        await asyncio.sleep(0.05)
    folder = Path(settings.var_dir) / "mail"
    messages = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        messages.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return messages


def link_in(message: email.message.EmailMessage, path_prefix: str) -> str:
    """The site-relative path of the first link in the message starting with `path_prefix`."""
    body = message.get_content()
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"[^\s]*)", body)
    assert match, f"no {path_prefix} link in: {body}"
    return match.group(1)

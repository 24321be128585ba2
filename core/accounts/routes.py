"""Sign-in, registration, resets, profile and two-factor pages. Thin: rules live in service."""

from __future__ import annotations

from typing import TypeVar

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from core import context
from core.accounts import second_factor
from core.accounts import service as accounts
from core.accounts.tables import User
from core.roles import AUTH_ENROL, AUTH_FULL, AUTH_SECOND_FACTOR
from core.security import (
    device_cookie,
    device_cookie_name,
    end_session,
    pending_auth_guard,
    signed_in,
    start_session,
)
from core.web import client_ip, form_data, page, redirect, safe_next

GENERIC_SIGN_IN_ERROR = "The email or password is not right. Please try again."


def _wait_message(seconds: int) -> str:
    minutes = max(1, (seconds + 59) // 60)
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many attempts. For your safety, please wait {minutes} {unit} and try again."


R = TypeVar("R", bound=Response)


def _remember_device(response: R, user: User) -> R:
    """The browser completed a sign-in: give it a new device cookie (see accounts.service)."""
    response.set_cookie(device_cookie(context.settings(), accounts.new_device_cookie(user)))
    return response


def _after_sign_in(request: Request, level: str, next_path: str) -> Redirect:
    if level == AUTH_ENROL:
        return redirect("/account/two-factor", "mfa-required")
    if level == AUTH_SECOND_FACTOR:
        request.session["next"] = next_path
        return redirect("/login/code")
    return redirect(next_path)


class SignInController(Controller):
    @get("/login")
    async def form(self, request: Request, next: FromQuery[str | None] = None) -> Template:
        return page(request, "accounts/login.html", values={"next": safe_next(next)}, errors={})

    @post("/login")
    async def submit(self, request: Request) -> Template | Redirect:
        data = await form_data(request)
        values = {"email": data.get("email", ""), "next": safe_next(data.get("next"))}
        result = await accounts.sign_in(
            data.get("email", ""),
            data.get("password", ""),
            ip=client_ip(request),
            device_cookie=request.cookies.get(device_cookie_name(context.settings())),
        )
        if result.user is None or result.level is None:
            message = _wait_message(result.retry_after) if result.retry_after else None
            return page(
                request,
                "accounts/login.html",
                status_code=429 if result.retry_after else 400,
                values=values,
                errors={"email": message or GENERIC_SIGN_IN_ERROR},
            )
        start_session(request, result.user, result.level)
        response = _after_sign_in(request, result.level, values["next"])
        return _remember_device(response, result.user) if result.level == AUTH_FULL else response

    @get("/login/code", guards=[pending_auth_guard(AUTH_SECOND_FACTOR)])
    async def code_form(self, request: Request) -> Template:
        return page(request, "accounts/login_code.html", errors={})

    @post("/login/code", guards=[pending_auth_guard(AUTH_SECOND_FACTOR)])
    async def code_submit(self, request: Request) -> Template | Redirect:
        data = await form_data(request)
        result = await accounts.complete_second_factor(
            request.user, data.get("code", ""), ip=client_ip(request)
        )
        if result.user is None:
            message = (
                _wait_message(result.retry_after)
                if result.retry_after
                else "That code is not right, or it was already used. Try the newest code."
            )
            status = 429 if result.retry_after else 400
            return page(request, "accounts/login_code.html", status, errors={"code": message})
        next_path = safe_next(request.session.get("next"))
        start_session(request, result.user, AUTH_FULL)
        return _remember_device(redirect(next_path), result.user)

    @post("/logout")
    async def logout(self, request: Request) -> Redirect:
        if request.user is not None:
            await accounts.record_sign_out(request.user, ip=client_ip(request))
        end_session(request)
        return redirect("/login", "signed-out")


class RegistrationController(Controller):
    @get("/register")
    async def form(self, request: Request) -> Template:
        return page(
            request, "accounts/register.html", values={}, errors={}, countries=accounts.COUNTRIES
        )

    @post("/register")
    async def submit(self, request: Request) -> Template | Redirect:
        data = await form_data(request)
        try:
            await accounts.register_patient(
                email=data.get("email", ""),
                password=data.get("password", ""),
                full_name=data.get("full_name", ""),
                phone=data.get("phone", ""),
                country=data.get("country", ""),
                ip=client_ip(request),
            )
        except accounts.InvalidInput as failed:
            return page(
                request,
                "accounts/register.html",
                status_code=400,
                values=data,
                errors=failed.errors,
                countries=accounts.COUNTRIES,
            )
        return redirect("/register/check-email")

    @get("/register/check-email")
    async def check_email(self, request: Request) -> Template:
        return page(request, "accounts/check_email.html")

    @get("/verify-email/{token:str}")
    async def verify_form(self, request: Request, token: FromPath[str]) -> Template:
        return page(request, "accounts/verify_email.html", token=token)

    @post("/verify-email/{token:str}")
    async def verify(self, request: Request, token: FromPath[str]) -> Redirect:
        if await accounts.confirm_email(token, ip=client_ip(request)):
            target = "/dashboard" if request.user else "/login"
            return redirect(target, "email-verified")
        return redirect("/login", "link-invalid")

    @post("/account/verify-email/resend", guards=[signed_in])
    async def resend(self, request: Request) -> Redirect:
        await accounts.resend_verification(request.user)
        return redirect("/dashboard", "verification-sent")


class ResetController(Controller):
    @get("/reset")
    async def form(self, request: Request) -> Template:
        return page(request, "accounts/reset_request.html", values={}, errors={})

    @post("/reset")
    async def submit(self, request: Request) -> Template | Redirect:
        data = await form_data(request)
        email = data.get("email", "")
        if not email.strip():
            errors = {"email": "Enter the email address you signed up with."}
            return page(request, "accounts/reset_request.html", 400, values=data, errors=errors)
        await accounts.request_password_reset(email, ip=client_ip(request))
        return redirect("/login", "reset-sent")

    @get("/reset/{token:str}")
    async def new_password_form(
        self, request: Request, token: FromPath[str]
    ) -> Template | Redirect:
        user = await accounts.peek_token(token, accounts.RESET_PASSWORD, accounts.STAFF_INVITE)
        if user is None:
            return redirect("/reset", "link-invalid")
        return page(
            request,
            "accounts/reset_password.html",
            token=token,
            errors={},
            invite=not user.password_hash,
        )

    @post("/reset/{token:str}")
    async def new_password(self, request: Request, token: FromPath[str]) -> Template | Redirect:
        data = await form_data(request)
        errors = {}
        if data.get("password", "") != data.get("password_again", ""):
            errors["password_again"] = "The two passwords are not the same."
        else:
            try:
                await accounts.reset_password(
                    token, data.get("password", ""), ip=client_ip(request)
                )
            except accounts.InvalidInput as failed:
                if "token" in failed.errors:
                    return redirect("/reset", "link-invalid")
                errors = failed.errors
        if errors:
            return page(
                request,
                "accounts/reset_password.html",
                400,
                token=token,
                errors=errors,
                invite=False,
            )
        end_session(request)
        return redirect("/login", "password-set")


async def account_page(request: Request, status: int = 200, **context) -> Template:
    user = request.user
    context.setdefault(
        "values", {"full_name": user.full_name, "phone": user.phone, "country": user.country}
    )
    context.setdefault("errors", {})
    context.setdefault("password_errors", {})
    context.setdefault("mfa_errors", {})
    return page(
        request,
        "accounts/account.html",
        status,
        countries=accounts.COUNTRIES,
        recovery_left=await second_factor.remaining_recovery_codes(user),
        **context,
    )


class AccountController(Controller):
    path = "/account"
    guards = [signed_in]

    async def _render(self, request: Request, status: int = 200, **context) -> Template:
        return await account_page(request, status, **context)

    @get("/")
    async def show(self, request: Request) -> Template:
        return await self._render(request)

    @post("/profile")
    async def profile(self, request: Request) -> Template | Redirect:
        data = await form_data(request)
        try:
            await accounts.update_profile(
                request.user,
                full_name=data.get("full_name", ""),
                phone=data.get("phone", ""),
                country=data.get("country", ""),
                ip=client_ip(request),
            )
        except accounts.InvalidInput as failed:
            return await self._render(request, 400, values=data, errors=failed.errors)
        return redirect("/account", "profile-saved")

    @post("/password")
    async def password(self, request: Request) -> Template | Redirect:
        data = await form_data(request)
        if data.get("new_password", "") != data.get("new_password_again", ""):
            errors = {"new_password_again": "The two new passwords are not the same."}
            return await self._render(request, 400, password_errors=errors)
        try:
            user = await accounts.change_password(
                request.user,
                data.get("current_password", ""),
                data.get("new_password", ""),
                ip=client_ip(request),
            )
        except accounts.InvalidInput as failed:
            return await self._render(request, 400, password_errors=failed.errors)
        start_session(request, user, AUTH_FULL)  # this device stays signed in, with a new id
        return redirect("/account", "password-changed")

    @post("/sign-out-everywhere")
    async def everywhere(self, request: Request) -> Redirect:
        user = await accounts.sign_out_everywhere(request.user, ip=client_ip(request))
        start_session(request, user, AUTH_FULL)
        return redirect("/account", "signed-out-everywhere")


class TwoFactorController(Controller):
    path = "/account/two-factor"

    @get("/", guards=[pending_auth_guard(AUTH_FULL, AUTH_ENROL)])
    async def setup_form(self, request: Request) -> Template | Redirect:
        user = request.user
        if user.totp_enabled_at is not None:
            return redirect("/account")
        secret = request.session.get("totp_pending") or second_factor.new_secret()
        request.session["totp_pending"] = secret
        return self._setup_page(request, secret, {})

    def _setup_page(
        self, request: Request, secret: str, errors: dict, status: int = 200
    ) -> Template:
        uri = second_factor.provisioning_uri(request.user, secret)
        return page(
            request,
            "accounts/two_factor_setup.html",
            status,
            qr=second_factor.qr_data_uri(uri),
            secret=secret,
            errors=errors,
        )

    @post("/", guards=[pending_auth_guard(AUTH_FULL, AUTH_ENROL)])
    async def setup(self, request: Request) -> Template | Redirect:
        user = request.user
        secret = request.session.get("totp_pending")
        if user.totp_enabled_at is not None or not secret:
            return redirect("/account/two-factor")
        data = await form_data(request)
        codes = await second_factor.enable(
            user, secret, data.get("code", ""), ip=client_ip(request)
        )
        if codes is None:
            errors = {"code": "That code is not right. Enter the 6-digit code your app shows now."}
            return self._setup_page(request, secret, errors, 400)
        refreshed = await accounts.get_user(str(user.uid))
        start_session(request, refreshed, AUTH_FULL)  # privilege change: new session id
        return _remember_device(page(request, "accounts/recovery_codes.html", codes=codes), user)

    @post("/recovery-codes", guards=[signed_in])
    async def new_codes(self, request: Request) -> Template | Redirect:
        if request.user.totp_enabled_at is None:
            return redirect("/account/two-factor")
        codes = await second_factor.regenerate_recovery_codes(request.user, ip=client_ip(request))
        return page(request, "accounts/recovery_codes.html", codes=codes)

    @post("/disable", guards=[signed_in])
    async def disable(self, request: Request) -> Template | Redirect:
        # Turning a protection off asks for the password again: a session left open on a shared
        # computer must not be enough.
        if request.user.totp_enabled_at is None:
            return redirect("/account")  # nothing to turn off
        data = await form_data(request)
        outcome = await second_factor.disable(
            request.user, data.get("password", ""), ip=client_ip(request)
        )
        if outcome == second_factor.KEPT_FOR_STAFF:
            return redirect("/account", "mfa-kept")
        if outcome == second_factor.WRONG_PASSWORD:
            errors = {"password": "Your password is not right, so two-factor sign-in stays on."}
            return await account_page(request, 400, mfa_errors=errors)
        return redirect("/account", "mfa-disabled")


ROUTES = [
    SignInController,
    RegistrationController,
    ResetController,
    AccountController,
    TwoFactorController,
]

"""Admin pages: staff accounts (with a doctor's reviewing settings and out-of-office days, the
same as on the doctor's own page: core/accounts/doctors.py) and the loaded specialty plugins.
Rules live in services."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.accounts import doctors
from core.accounts import service as accounts
from core.accounts.tables import User
from core.assignment import service as assignment
from core.errors import InvalidInput, NotFound
from core.roles import ADMIN, DOCTOR, STAFF_ROLES
from core.schedule import service as schedule
from core.security import role_guard
from core.specialty import Specialty
from core.web import client_ip, form_data, page, redirect

ROLE_CHOICES = [("doctor", "Doctor"), ("coordinator", "Coordinator"), ("admin", "Admin")]


def _specialties(request: Request) -> dict[str, Specialty]:
    return {s.slug: s for s in request.app.state.plugins.specialties()}


def _known_specialties(request: Request) -> dict[str, str]:
    return {slug: s.title for slug, s in _specialties(request).items()}


async def _staff_member(uid: str) -> User:
    user = await accounts.get_user(uid)
    if user is None or user.role not in STAFF_ROLES:
        raise NotFoundException()
    return user


async def _doctor_part(
    request: Request,
    member: User | None,
    *,
    reviewing_values: dict[str, str] | None = None,
    reviewing_errors: dict[str, str] | None = None,
    away_values: dict[str, str] | None = None,
    away_errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the staff form shows of a doctor besides their account: the reviewing settings the
    doctor sees on their own page, their out-of-office days and the cases they hold now."""
    if member is None or member.role != DOCTOR:
        return {}
    return {
        "settings": await doctors.settings_of(member, _specialties(request)),
        "held": await assignment.doctor_cases(member),
        "reviewing_values": reviewing_values or {},
        "reviewing_errors": reviewing_errors or {},
        "away_values": away_values or {},
        "away_errors": away_errors or {},
    }


async def _staff_form_data(request: Request) -> tuple[dict[str, str], list[str]]:
    form = await request.form()
    values = {key: str(form.get(key, "")) for key in ("email", "full_name", "role", "bio")}
    return values, [
        str(slug) for slug in form.getall("specialties")
    ] if "specialties" in form else []


class StaffController(Controller):
    path = "/admin/staff"
    guards = [role_guard(ADMIN)]

    def _form(self, request: Request, status: int = 200, **context) -> Template:
        context.setdefault("errors", {})
        return page(
            request,
            "admin/staff_form.html",
            status,
            roles=ROLE_CHOICES,
            specialty_choices=_known_specialties(request),
            **context,
        )

    async def _edit_page(
        self, request: Request, member: User, status: int = 200, **doctor: Any
    ) -> Template:
        """The form of a staff member as saved, with (for a doctor) their reviewing settings;
        `doctor`: what `_doctor_part` re-renders a refused form with."""
        values = {"full_name": member.full_name, "role": member.role, "bio": member.bio}
        return self._form(
            request,
            status,
            values=values,
            chosen=await accounts.doctor_specialties(member),
            member=member,
            **await _doctor_part(request, member, **doctor),
        )

    @get("/")
    async def index(self, request: Request) -> Template:
        return page(
            request,
            "admin/staff_list.html",
            staff=await accounts.list_staff(),
            specialty_titles=_known_specialties(request),
        )

    @get("/new")
    async def new_form(self, request: Request) -> Template:
        return self._form(request, values={"role": "doctor"}, chosen=[], member=None)

    @post("/new")
    async def create(self, request: Request) -> Template | Redirect:
        values, chosen = await _staff_form_data(request)
        try:
            await accounts.create_staff(
                email=values["email"],
                full_name=values["full_name"],
                role=values["role"],
                specialties=chosen,
                known_specialties=set(_known_specialties(request)),
                bio=values["bio"],
                by=request.user,
                ip=client_ip(request),
            )
        except accounts.InvalidInput as failed:
            return self._form(
                request, 400, values=values, chosen=chosen, member=None, errors=failed.errors
            )
        return redirect("/admin/staff", "staff-created")

    @get("/{uid:str}")
    async def edit_form(self, request: Request, uid: FromPath[str]) -> Template:
        return await self._edit_page(request, await _staff_member(uid))

    @post("/{uid:str}")
    async def update(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        member = await _staff_member(uid)
        values, chosen = await _staff_form_data(request)
        try:
            await accounts.update_staff(
                member,
                full_name=values["full_name"],
                role=values["role"],
                specialties=chosen,
                known_specialties=set(_known_specialties(request)),
                bio=values["bio"],
                by=request.user,
                ip=client_ip(request),
            )
        except accounts.InvalidInput as failed:
            return self._form(
                request,
                400,
                values=values,
                chosen=chosen,
                member=member,
                errors=failed.errors,
                **await _doctor_part(request, member),
            )
        return redirect("/admin/staff", "staff-saved")

    @post("/{uid:str}/reviewing")
    async def save_reviewing(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        member = await _staff_member(uid)
        form = await request.form()
        values = {key: [str(v) for v in form.getall(key)] for key in form.keys()}
        try:
            await doctors.save_settings(
                member, values, _specialties(request), by=request.user, ip=client_ip(request)
            )
        except NotFound:
            raise NotFoundException() from None
        except InvalidInput as invalid:
            flat = {name: items[0] if items else "" for name, items in values.items()}
            return await self._edit_page(
                request, member, 400, reviewing_values=flat, reviewing_errors=invalid.errors
            )
        return redirect(f"/admin/staff/{member.uid}#reviewing", "doctor-settings-saved")

    @post("/{uid:str}/away")
    async def add_away(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        member = await _staff_member(uid)
        values = await form_data(request)
        try:
            await doctors.add_away(
                member,
                values.get("first_day", ""),
                values.get("last_day", ""),
                by=request.user,
                ip=client_ip(request),
            )
        except NotFound:
            raise NotFoundException() from None
        except InvalidInput as invalid:
            return await self._edit_page(
                request, member, 400, away_values=values, away_errors=invalid.errors
            )
        return redirect(f"/admin/staff/{member.uid}#away", "doctor-away-added")

    @post("/{uid:str}/away/{away:str}/remove")
    async def remove_away(
        self, request: Request, uid: FromPath[str], away: FromPath[str]
    ) -> Redirect:
        member = await _staff_member(uid)
        try:
            await doctors.remove_away(member, away, by=request.user, ip=client_ip(request))
        except NotFound:
            raise NotFoundException() from None
        return redirect(f"/admin/staff/{member.uid}#away", "away-removed")

    @post("/{uid:str}/disable")
    async def disable(self, request: Request, uid: FromPath[str]) -> Redirect:
        member = await _staff_member(uid)
        try:
            await accounts.set_active(member, False, by=request.user, ip=client_ip(request))
        except accounts.InvalidInput:
            return redirect(f"/admin/staff/{uid}")
        return redirect("/admin/staff", "staff-disabled")

    @post("/{uid:str}/enable")
    async def enable(self, request: Request, uid: FromPath[str]) -> Redirect:
        member = await _staff_member(uid)
        await accounts.set_active(member, True, by=request.user, ip=client_ip(request))
        return redirect("/admin/staff", "staff-enabled")


@get("/admin/plugins", guards=[role_guard(ADMIN)])
async def plugins_page(request: Request) -> Template:
    host = request.app.state.plugins
    return page(request, "admin/plugins.html", plugins=host.plugins, specialties=host.specialties())


@get("/admin/jobs", guards=[role_guard(ADMIN)])
async def jobs_page(request: Request) -> Template:
    """The periodic jobs (core/schedule): when each last ran, how it went, when it runs next."""
    return page(
        request, "admin/jobs.html", jobs=await schedule.jobs_of(request.app.state.scheduler)
    )


@post("/admin/jobs/{name:str}/run", guards=[role_guard(ADMIN)])
async def run_job(request: Request, name: FromPath[str]) -> Redirect:
    """Run a job now (on the worker's next pass, which this wakes)."""
    try:
        await schedule.run_soon(request.app.state.scheduler, name)
    except NotFound:
        raise NotFoundException() from None
    request.app.state.outbox.wake()
    return redirect("/admin/jobs", "job-queued")


ROUTES = [StaffController, plugins_page, jobs_page, run_job]

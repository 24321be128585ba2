"""Admin pages: staff accounts and the loaded specialty plugins. Rules live in services."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.accounts import service as accounts
from core.accounts.tables import User
from core.roles import ADMIN, STAFF_ROLES
from core.security import role_guard
from core.web import client_ip, page, redirect

ROLE_CHOICES = [("doctor", "Doctor"), ("coordinator", "Coordinator"), ("admin", "Admin")]


def _known_specialties(request: Request) -> dict[str, str]:
    return {s.slug: s.title for s in request.app.state.plugins.specialties()}


async def _staff_member(uid: str) -> User:
    user = await accounts.get_user(uid)
    if user is None or user.role not in STAFF_ROLES:
        raise NotFoundException()
    return user


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
        member = await _staff_member(uid)
        values = {"full_name": member.full_name, "role": member.role, "bio": member.bio}
        chosen = await accounts.doctor_specialties(member)
        return self._form(request, values=values, chosen=chosen, member=member)

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
                request, 400, values=values, chosen=chosen, member=member, errors=failed.errors
            )
        return redirect("/admin/staff", "staff-saved")

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


ROUTES = [StaffController, plugins_page]

"""The doctor's pages: a case offered to them or accepted by them — the subject, the intake
answers, the questions and the records — and their answer: accept (declaring no conflict of
interest), decline or hand back, each with a reason staff read. Every rule is the assignment
service's; a case that is not with this doctor is not found (audited as a denial)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.accounts import doctors
from core.assignment import service as assignment
from core.cases import service as cases
from core.errors import InvalidInput, NotFound, Refused
from core.pages.common import form_lists, records_page
from core.roles import DOCTOR
from core.security import record_denied, role_guard
from core.web import client_ip, form_data, page, redirect


async def doctor_line(request: Request, uid: str) -> assignment.DoctorLine:
    """The case with the signed-in doctor (offered or accepted); 404, audited, otherwise."""
    try:
        return await assignment.doctor_case(request.user, uid)
    except cases.CaseNotFound:
        await record_denied(request, reason="not_with_this_doctor")
        raise NotFoundException() from None


class DoctorCaseController(Controller):
    path = "/doctor/cases"
    guards = [role_guard(DOCTOR)]

    async def _page(
        self, request: Request, line: assignment.DoctorLine, status: int = 200, **extra: Any
    ) -> Template:
        case = line.case
        return page(
            request,
            "doctor/case.html",
            status,
            case=case,
            offer=line.offer,
            is_offer=line.is_offer,
            age=assignment.subject_age(case, assignment.today()),
            subject=await cases.subject_of(case),
            specialty=request.app.state.plugins.specialty(case.specialty),
            answers=cases.answers_of(case),
            questions=cases.questions_of(case),
            **await records_page(request, case, f"/doctor/cases/{case.uid}"),
            values=extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    @get("/{uid:str}")
    async def show(self, request: Request, uid: FromPath[str]) -> Template:
        return await self._page(request, await doctor_line(request, uid))

    async def _answer(
        self, request: Request, uid: str, done: str, action: Callable[..., Awaitable[Any]]
    ) -> Template | Redirect:
        line = await doctor_line(request, uid)
        values = await form_data(request)
        try:
            await action(line.case, values)
        except InvalidInput as invalid:
            return await self._page(request, line, 400, values=values, errors=invalid.errors)
        except Refused as refused:
            return await self._page(request, line, 409, values=values, problem=refused.message)
        if done == "offer-accepted":
            return redirect(f"/doctor/cases/{line.case.uid}", done)
        return redirect("/dashboard", done)

    @post("/{uid:str}/accept")
    async def accept(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._answer(
            request,
            uid,
            "offer-accepted",
            lambda case, values: assignment.accept(
                case, request.user, no_conflict=values.get("no_conflict") == "yes", ip=ip
            ),
        )

    @post("/{uid:str}/decline")
    async def decline(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._answer(
            request,
            uid,
            "offer-declined",
            lambda case, values: assignment.decline(
                case, request.user, values.get("reason", ""), ip=ip
            ),
        )

    @post("/{uid:str}/hand-back")
    async def hand_back(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._answer(
            request,
            uid,
            "case-handed-back",
            lambda case, values: assignment.hand_back(
                case, request.user, values.get("reason", ""), ip=ip
            ),
        )


def _specialties(request: Request) -> dict[str, Any]:
    plugins = request.app.state.plugins
    return {s.slug: s for s in plugins.specialties()}


class DoctorSettingsController(Controller):
    """The doctor's reviewing settings: title and registration, subspecialties, children,
    the most cases they hold, out-of-office ranges (core/accounts/doctors.py)."""

    path = "/doctor/settings"
    guards = [role_guard(DOCTOR)]

    async def _page(self, request: Request, status: int = 200, **extra: Any) -> Template:
        return page(
            request,
            "doctor/settings.html",
            status,
            settings=await doctors.settings_of(request.user, _specialties(request)),
            held=await assignment.doctor_cases(request.user),
            values=extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            away_values=extra.pop("away_values", {}),
            away_errors=extra.pop("away_errors", {}),
            **extra,
        )

    @get("/")
    async def show(self, request: Request) -> Template:
        return await self._page(request)

    @post("/")
    async def save(self, request: Request) -> Template | Redirect:
        values = await form_lists(request)
        try:
            await doctors.save_settings(
                request.user,
                values,
                _specialties(request),
                by=request.user,
                ip=client_ip(request),
            )
        except InvalidInput as invalid:
            flat = {name: items[0] if items else "" for name, items in values.items()}
            return await self._page(request, 400, values=flat, errors=invalid.errors)
        return redirect("/doctor/settings", "settings-saved")

    @post("/away")
    async def add_away(self, request: Request) -> Template | Redirect:
        values = await form_data(request)
        try:
            await doctors.add_away(
                request.user,
                values.get("first_day", ""),
                values.get("last_day", ""),
                by=request.user,
                ip=client_ip(request),
            )
        except InvalidInput as invalid:
            return await self._page(request, 400, away_values=values, away_errors=invalid.errors)
        return redirect("/doctor/settings#away", "away-added")

    @post("/away/{away:str}/remove")
    async def remove_away(self, request: Request, away: FromPath[str]) -> Redirect:
        try:
            await doctors.remove_away(request.user, away, by=request.user, ip=client_ip(request))
        except NotFound:
            raise NotFoundException() from None
        return redirect("/doctor/settings#away", "away-removed")


ROUTES = [DoctorCaseController, DoctorSettingsController]

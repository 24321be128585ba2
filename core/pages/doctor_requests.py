"""The reviewing doctor's questions to the patient (core/completeness): the thread of rounds
and the form to ask. The doctor's case page includes the same partial (templates/doctor/_ask.html);
this controller answers the form, and shows it on a small page of its own (also when the
question needs correcting). Every rule is the completeness service's; a case that is not with
this doctor is not found (audited as a denial)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.assignment import service as assignment
from core.cases import service as cases
from core.completeness import service as completeness
from core.errors import InvalidInput, Refused
from core.pages.doctor import doctor_line
from core.roles import DOCTOR
from core.security import record_denied, role_guard
from core.web import client_ip, form_data, page, redirect


class DoctorRequestsController(Controller):
    path = "/doctor/cases/{uid:str}/requests"
    guards = [role_guard(DOCTOR)]

    async def _page(
        self, request: Request, line: assignment.DoctorLine, status: int = 200, **extra: Any
    ) -> Template:
        case = line.case
        specialty = request.app.state.plugins.specialty(case.specialty)
        return page(
            request,
            "doctor/ask.html",
            status,
            case=case,
            specialty=specialty,
            thread=await completeness.thread_of(case, specialty),
            values=extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    @get("/")
    async def show(self, request: Request, uid: FromPath[str]) -> Template:
        return await self._page(request, await doctor_line(request, uid))

    @post("/")
    async def ask(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        line = await doctor_line(request, uid)
        values = await form_data(request)
        specialty = request.app.state.plugins.specialty(line.case.specialty)
        try:
            await completeness.ask_question(
                line.case, request.user, values, specialty, ip=client_ip(request)
            )
        except cases.CaseNotFound:  # taken from this doctor since the page loaded
            await record_denied(request, reason="not_with_this_doctor")
            raise NotFoundException() from None
        except InvalidInput as invalid:
            return await self._page(request, line, 400, values=values, errors=invalid.errors)
        except Refused as refused:
            return await self._page(
                request, line, refused.status, values=values, problem=refused.message
            )
        return redirect(f"/doctor/cases/{line.case.uid}/review#questions", "question-asked")


ROUTES = [DoctorRequestsController]

"""The patient's request wizard. Thin: rules live in core.cases.service.

It shows the fee a request will be asked (payments) on its review step, so it lives above cases
and payments.

Steps: kind → for whom → intake → questions → preferred doctor → review → submit. Every step is
a plain form that posts and redirects (works without JavaScript); with htmx the form also
autosaves while the person types, and show-if fields appear as their condition is met.
"""

from __future__ import annotations

from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from core.assignment import service as assignment
from core.cases import reception, states
from core.cases import service as cases
from core.cases.tables import Case
from core.forms import MappingFormData, change_rows, visible_names
from core.pages.common import form_lists, own_case, specialty_of
from core.payments import service as payments
from core.roles import PATIENT
from core.security import role_guard
from core.web import client_ip, page, redirect

STEP_TITLES = {
    "subject": "Who it is for",
    "intake": "About the case",
    "questions": "Your questions",
    "doctor": "Choose a doctor",
    "review": "Check and submit",
}


def _wizard(request: Request, case: Case, step: str, status: int = 200, **context: Any) -> Template:
    context.setdefault("errors", {})
    return page(
        request,
        f"cases/step_{step}.html",
        status,
        case=case,
        specialty=specialty_of(request, case.specialty),
        step=step,
        steps=STEP_TITLES,
        draft=cases.draft_of(case),
        **context,
    )


def _next_step(step: str) -> str:
    order = list(STEP_TITLES)
    return order[order.index(step) + 1]


class RequestController(Controller):
    path = "/requests"
    guards = [role_guard(PATIENT)]

    @get("/new")
    async def choose_kind(self, request: Request) -> Template:
        specialties = request.app.state.plugins.specialties()
        return page(
            request, "cases/step_kind.html", specialties=specialties, errors={}, steps=STEP_TITLES
        )

    @post("/new")
    async def start(self, request: Request) -> Template | Redirect:
        data = await form_lists(request)
        slug = (data.get("specialty") or [""])[0]
        specialty = request.app.state.plugins.specialty(slug)
        if specialty is None:
            specialties = request.app.state.plugins.specialties()
            errors = {"specialty": "Choose the kind of second opinion you need."}
            return page(
                request,
                "cases/step_kind.html",
                400,
                specialties=specialties,
                errors=errors,
                steps=STEP_TITLES,
            )
        case = await cases.start_request(request.user, specialty, ip=client_ip(request))
        return redirect(f"/requests/{case.uid}/subject")

    @get("/{uid:str}/{step:str}")
    async def show_step(
        self, request: Request, uid: FromPath[str], step: FromPath[str]
    ) -> Template | Redirect:
        case = await own_case(request, uid)
        if case.status != states.DRAFT:
            return redirect(f"/cases/{case.uid}")
        if step not in STEP_TITLES:
            raise NotFoundException()
        return await self._render_step(request, case, step)

    async def _render_step(
        self,
        request: Request,
        case: Case,
        step: str,
        status: int = 200,
        errors: dict | None = None,
        **extra: Any,
    ) -> Template:
        specialty = specialty_of(request, case.specialty)
        draft = cases.draft_of(case)
        context: dict[str, Any] = {"errors": errors or {}, **extra}
        if step == "intake":
            raw = draft.get("intake", {})
            context["raw"] = raw
            context["visible"] = visible_names(specialty.intake, MappingFormData(raw))
        elif step == "subject":
            context["raw"] = draft.get("subject", {})
            context["sexes"], context["relationships"] = cases.SEXES, cases.RELATIONSHIPS
        elif step == "questions":
            context["raw"] = draft.get("questions", {})
            context["max_questions"] = cases.MAX_QUESTIONS
        elif step == "doctor":
            context["raw"] = draft.get("doctor", {})
            context["doctors"] = await cases.doctors_for(case.specialty)
            context["away"] = await assignment.away_today(case.specialty)
        elif step == "review":
            context["problems"] = cases.incomplete_steps(
                case, request.user, specialty, request.app.state.plugins
            )
            context["answers"] = cases.answers_of(case)
            context["questions"] = cases.questions_of(case)
            doctors = await cases.doctors_for(case.specialty)
            context["doctor"] = next((d for d in doctors if d.id == case.preferred_doctor), None)
            country = request.user.country or ""
            context["fee"] = await payments.quote_or_none(country, case.specialty)
        return _wizard(request, case, step, status, **context)

    @post("/{uid:str}/{step:str}")
    async def save_step(
        self, request: Request, uid: FromPath[str], step: FromPath[str]
    ) -> Template | Redirect:
        case = await own_case(request, uid)
        if case.status != states.DRAFT:
            return redirect(f"/cases/{case.uid}")
        specialty = specialty_of(request, case.specialty)
        raw = await form_lists(request)
        action = (await request.form()).get("action", "")
        if step == "intake" and isinstance(action, str) and action.startswith(("add:", "remove:")):
            raw = change_rows(specialty.intake, raw, action)
            await cases.autosave(case, "intake", raw)
            return await self._render_step(request, case, "intake")
        if step == "subject":
            errors = await cases.save_subject(case, request.user, raw)
        elif step == "intake":
            errors = await cases.save_intake(case, specialty, request.app.state.plugins, raw)
        elif step == "questions":
            errors = await cases.save_questions(case, raw)
        elif step == "doctor":
            away = await assignment.away_today(case.specialty)
            errors = await cases.save_preferred_doctor(case, raw, away)
        else:
            raise NotFoundException()
        if errors:
            return await self._render_step(request, case, step, 400, errors)
        return redirect(f"/requests/{case.uid}/{_next_step(step)}")

    @post("/{uid:str}/{step:str}/autosave")
    async def autosave(
        self, request: Request, uid: FromPath[str], step: FromPath[str]
    ) -> Template | Response:
        """htmx: keep the entries; answer with the saved time, or the refreshed intake fields."""
        case = await own_case(request, uid)
        if case.status != states.DRAFT or step not in cases.STEPS:
            return Response(
                "This request can no longer be changed.", status_code=409, media_type="text/plain"
            )
        raw = await form_lists(request)
        saved_at = await cases.autosave(case, step, raw)
        if step == "intake" and request.query_params.get("refresh"):
            specialty = specialty_of(request, case.specialty)
            return HTMXBlockTemplate(
                template_name="cases/step_intake.html",
                block_name="conditionals",
                context={
                    "case": case,
                    "specialty": specialty,
                    "raw": raw,
                    "visible": visible_names(specialty.intake, MappingFormData(raw)),
                    "errors": {},
                    "saved_at": saved_at,
                    "refresh_url": f"/requests/{case.uid}/intake/autosave?refresh=1",
                },
            )
        return HTMXBlockTemplate(
            template_name="cases/_saved.html", block_name="saved", context={"saved_at": saved_at}
        )

    @post("/{uid:str}/submit")
    async def submit(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        case = await own_case(request, uid)
        if case.status != states.DRAFT:
            return redirect(f"/cases/{case.uid}")
        specialty = specialty_of(request, case.specialty)
        problems = await cases.submit(
            case, request.user, specialty, request.app.state.plugins, ip=client_ip(request)
        )
        if problems:
            return await self._render_step(request, case, "review", 400)
        return redirect(f"/cases/{case.uid}", "request-submitted")

    @get("/{uid:str}/cancel")
    async def confirm_cancel(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        """Say what cancelling means (and what is refunded) before anything is cancelled."""
        case = await own_case(request, uid)
        if case.status not in states.TRANSITIONS["cancel"].sources:
            return redirect(f"/cases/{case.uid}", "cannot-cancel")
        specialty = request.app.state.plugins.specialty(case.specialty)
        return page(
            request, "cases/cancel.html", case=case, payment=await payments.summary(case, specialty)
        )

    @post("/{uid:str}/cancel")
    async def cancel(self, request: Request, uid: FromPath[str]) -> Redirect:
        """Cancel a draft, or a submitted request not yet received: what was paid is refunded.
        Only from the confirmation page (`confirm=yes`); anything else is sent there first."""
        case = await own_case(request, uid)
        if (await request.form()).get("confirm") != "yes":
            return redirect(f"/requests/{case.uid}/cancel")
        try:
            await reception.cancel(case, request.user, ip=client_ip(request))
        except cases.TransitionRefused:
            return redirect(f"/cases/{case.uid}", "cannot-cancel")
        return redirect("/dashboard", "request-cancelled")


ROUTES = [RequestController]

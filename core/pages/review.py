"""The doctor's review workspace: the case and its records beside the review form, autosaved;
the preview; signing. Thin: every rule is core.reviews.service's.

Without JavaScript the form posts and redirects ("Save draft", "Preview and sign"); with htmx it
also autosaves while the doctor types, and a save based on an older draft (another tab) is
refused with the newer text shown (409), never overwriting it.
"""

from __future__ import annotations

from typing import Any

from jinja2_fragments.litestar import HTMXBlockTemplate
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.assignment import service as assignment
from core.cases import service as cases
from core.cases.tables import Case
from core.completeness import service as completeness
from core.errors import InvalidInput, Refused
from core.forms import change_rows
from core.pages.common import form_lists, records_page, specialty_of, urgent_panel
from core.reports import service as reports
from core.reviews import colleagues, urgent
from core.reviews import service as reviews
from core.roles import DOCTOR
from core.security import record_denied, role_guard
from core.web import client_ip, form_data, page, redirect

TEMPLATE = "doctor/review.html"


async def _space(request: Request, case: Case, specialty: Any) -> reviews.Workspace:
    """The review's form for this doctor: with the amendment's fields while they correct the
    signed report."""
    amending = await reviews.amending(case, request.user)
    return await reviews.workspace(case, specialty, amending=amending)


def _not_accepted(request: Request, _: reviews.NotAccepted) -> Redirect:
    """A case only offered to this doctor has no review yet: back to the case, to accept it."""
    return redirect(f"/doctor/cases/{request.path_params['uid']}")


class ReviewController(Controller):
    path = "/doctor/cases/{uid:str}/review"
    guards = [role_guard(DOCTOR)]
    exception_handlers = {reviews.NotAccepted: _not_accepted}

    async def _case(self, request: Request, uid: str) -> Case:
        try:
            return await reviews.accepted_case(request.user, uid)
        except cases.CaseNotFound:
            await record_denied(request, reason="not_with_this_doctor")
            raise NotFoundException() from None

    async def _page(
        self,
        request: Request,
        case: Case,
        status: int = 200,
        *,
        raw: dict[str, list[str]] | None = None,
        version: int | None = None,
        errors: dict[str, str] | None = None,
        template: str = TEMPLATE,
        **extra: Any,
    ) -> Template:
        specialty = specialty_of(request, case.specialty)
        space = await _space(request, case, specialty)
        draft = await reviews.draft_of(case, request.user)
        raw = draft.raw if raw is None else raw
        signed = await reviews.last_full_review(case)
        amending = signed is not None and space.amending
        report_state = await reports.state_of(case, request.user) if signed else None
        # Before signing a hold is set; after, it can only be lifted (the report goes out).
        can_hold = signed is None or bool(report_state and report_state.held)
        return page(
            request,
            template,
            status,
            case=case,
            specialty=specialty,
            space=space,
            raw=raw,
            visible=space.visible(raw),
            version=draft.version if version is None else version,
            page_id=reviews.new_page_id(),
            saved_at=draft.updated_at,
            errors=errors or {},
            signed=signed,
            amending=amending,
            signed_content=reviews.signed_content(signed) if signed else None,
            report_state=report_state,
            age=assignment.subject_age(case, assignment.today()),
            subject=await cases.subject_of(case),
            answers=cases.answers_of(case),
            questions=cases.questions_of(case),
            **await records_page(request, case, f"/doctor/cases/{case.uid}/review"),
            **await urgent_panel(
                case, f"/doctor/cases/{case.uid}/review", can_mark=True, can_hold=can_hold
            ),
            thread=await completeness.thread_of(case, specialty),
            opinions=await colleagues.opinions_of(case),
            colleague_choices=[] if signed else await colleagues.candidates(request.user),
            colleague_values=extra.pop("colleague_values", {}),
            colleague_errors=extra.pop("colleague_errors", {}),
            values=extra.pop("values", {}),
            urgent_values=extra.pop("urgent_values", {}),
            urgent_errors=extra.pop("urgent_errors", {}),
            **extra,
        )

    @get("/")
    async def show(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        case = await self._case(request, uid)
        return await self._page(request, case)

    async def _save(self, request: Request, case: Case, raw: dict[str, list[str]]) -> reviews.Draft:
        form = await request.form()
        based_on = form.get("overwrite") or form.get("version") or "0"
        return await reviews.save_draft(
            case,
            request.user,
            raw,
            int(based_on) if str(based_on).isdigit() else -1,
            page=str(form.get("page") or "")[:32],
            ip=client_ip(request),
        )

    @post("/")
    async def save(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        """Save the draft ("Save draft", a row added or removed), or check it for signing."""
        case = await self._case(request, uid)
        specialty = specialty_of(request, case.specialty)
        raw = await form_lists(request)
        action = str((await request.form()).get("action") or "save")
        if action.startswith(("add:", "remove:")):
            raw = change_rows(specialty.review, raw, action)
        try:
            draft = await self._save(request, case, raw)
        except reviews.StaleDraft as stale:
            return await self._page(
                request, case, 409, raw=raw, version=stale.current.version, conflict=stale
            )
        except reviews.ReviewClosed as closed:
            return await self._page(request, case, 409, problem=closed.message)
        if action.startswith(("add:", "remove:")):
            return await self._page(request, case, raw=draft.raw, version=draft.version)
        if action == "check":
            return redirect(f"/doctor/cases/{case.uid}/review/sign")
        return redirect(f"/doctor/cases/{case.uid}/review", "review-saved")

    @post("/autosave")
    async def autosave(self, request: Request, uid: FromPath[str]) -> Template:
        """htmx: keep the entries; answer with the new version (or the newer text, 409)."""
        try:
            case = await self._case(request, uid)
        except reviews.NotAccepted as offered:  # htmx swaps a status in, not a whole page
            raise Refused(offered.message) from None
        raw = await form_lists(request)
        context: dict[str, Any] = {"case": case}
        try:
            draft = await self._save(request, case, raw)
        except reviews.StaleDraft as stale:
            specialty = specialty_of(request, case.specialty)
            space = await _space(request, case, specialty)
            return HTMXBlockTemplate(
                template_name=TEMPLATE,
                block_name="conflict",
                status_code=409,
                context={**context, "conflict": stale, "space": space, "specialty": specialty},
            )
        except reviews.ReviewClosed as closed:
            return HTMXBlockTemplate(
                template_name=TEMPLATE,
                block_name="saved",
                status_code=409,
                context={**context, "problem": closed.message},
            )
        context |= {"saved_at": draft.updated_at, "version": draft.version}
        if request.query_params.get("refresh"):
            specialty = specialty_of(request, case.specialty)
            space = await _space(request, case, specialty)
            context |= {
                "space": space,
                "specialty": specialty,
                "raw": raw,
                "visible": space.visible(raw),
                "errors": {},
            }
            return HTMXBlockTemplate(
                template_name=TEMPLATE, block_name="conditionals", context=context
            )
        return HTMXBlockTemplate(template_name=TEMPLATE, block_name="saved", context=context)

    @get("/sign")
    async def confirm(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        """The review as it will read, and the signature form; the form again when a field
        needs attention."""
        case = await self._case(request, uid)
        return await self._preview(request, case)

    async def _preview(
        self, request: Request, case: Case, status: int = 200, **extra: Any
    ) -> Template | Redirect:
        specialty = specialty_of(request, case.specialty)
        space = await _space(request, case, specialty)
        if await reviews.signed_of(case) is not None and not space.amending:
            return redirect(f"/doctor/cases/{case.uid}/review")
        draft = await reviews.draft_of(case, request.user)
        checked = reviews.check(space, request.app.state.plugins, draft.raw)
        if checked.errors:
            return await self._page(request, case, 400, errors=checked.errors)
        return page(
            request,
            "doctor/sign.html",
            status,
            case=case,
            specialty=specialty,
            preview=await reviews.preview(case, space, checked),
            amending=space.amending,
            version=draft.version,
            errors=extra.pop("errors", {}),
            **extra,
        )

    @post("/sign")
    async def sign(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        case = await self._case(request, uid)
        form = await request.form()
        specialty = specialty_of(request, case.specialty)
        version = str(form.get("version") or "")
        try:
            signed = await reviews.sign(
                case,
                request.user,
                await _space(request, case, specialty),
                request.app.state.plugins,
                version=int(version) if version.isdigit() else -1,
                password=str(form.get("password") or ""),
                code=str(form.get("code") or ""),
                confirmed=form.get("confirm") == "yes",
                ip=client_ip(request),
            )
        except InvalidInput as invalid:
            return await self._page(request, case, 400, errors=invalid.errors)
        except reviews.StaleDraft as stale:
            return await self._preview(request, case, 409, problem=stale.message)
        except reviews.ReviewClosed:
            return redirect(f"/doctor/cases/{case.uid}/review")
        except reviews.SignRefused as refused:
            return await self._preview(request, case, refused.status, problem=refused.message)
        notice = "amendment-signed" if signed.sequence > 1 else "review-signed"
        return redirect(f"/doctor/cases/{case.uid}/review", notice)

    # After the report: an addendum, or an amended report (core/reviews/service.py).

    @post("/amend")
    async def amend(self, request: Request, uid: FromPath[str]) -> Redirect:
        """Open the signed review again as a draft, to correct it."""
        case = await self._case(request, uid)
        try:
            await reviews.start_amendment(case, request.user, ip=client_ip(request))
        except reviews.ReviewClosed:
            return redirect(f"/doctor/cases/{case.uid}/review")
        return redirect(f"/doctor/cases/{case.uid}/review#review-form")

    @post("/amend/cancel")
    async def cancel_amendment(self, request: Request, uid: FromPath[str]) -> Redirect:
        case = await self._case(request, uid)
        await reviews.cancel_amendment(case, request.user, ip=client_ip(request))
        return redirect(f"/doctor/cases/{case.uid}/review")

    @post("/addendum")
    async def addendum(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        case = await self._case(request, uid)
        values = await form_data(request)
        try:
            await reviews.sign_addendum(
                case,
                request.user,
                reason=values.get("addendum_reason", ""),
                text=values.get("addendum_text", ""),
                password=values.get("password", ""),
                code=values.get("code", ""),
                confirmed=values.get("confirm") == "yes",
                ip=client_ip(request),
            )
        except InvalidInput as invalid:
            return await self._page(
                request, case, 400, addendum_values=values, addendum_errors=invalid.errors
            )
        except reviews.SignRefused as refused:
            return await self._page(
                request,
                case,
                refused.status,
                addendum_values=values,
                addendum_problem=refused.message,
            )
        except reviews.ReviewClosed:
            return redirect(f"/doctor/cases/{case.uid}/review")
        return redirect(f"/doctor/cases/{case.uid}/review", "addendum-signed")

    # Urgent findings and the communication log (core/reviews/urgent.py).

    async def _urgent_act(
        self, request: Request, uid: str, notice: str, action: Any
    ) -> Template | Redirect:
        case = await self._case(request, uid)
        values = await form_data(request)
        try:
            await action(case, values)
        except InvalidInput as invalid:
            return await self._page(
                request, case, 400, urgent_values=values, urgent_errors=invalid.errors
            )
        except Refused as refused:
            return await self._page(request, case, refused.status, problem=refused.message)
        return redirect(f"/doctor/cases/{case.uid}/review#urgent", notice)

    @post("/urgent")
    async def mark_urgent(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._urgent_act(
            request,
            uid,
            "urgent-marked",
            lambda case, values: urgent.mark(case, request.user, values, ip=ip),
        )

    @post("/communications")
    async def log(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._urgent_act(
            request,
            uid,
            "communication-logged",
            lambda case, values: urgent.log(case, request.user, values, ip=ip),
        )

    @post("/hold")
    async def hold(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        ip = client_ip(request)
        return await self._urgent_act(
            request,
            uid,
            "hold-saved",
            lambda case, values: urgent.set_hold(
                case, request.user, values.get("hold") == "yes", ip=ip
            ),
        )

    # A colleague's opinion (core/reviews/colleagues.py).

    @post("/colleagues")
    async def invite(self, request: Request, uid: FromPath[str]) -> Template | Redirect:
        case = await self._case(request, uid)
        values = await form_data(request)
        try:
            await colleagues.invite(case, request.user, values, ip=client_ip(request))
        except InvalidInput as invalid:
            return await self._page(
                request, case, 400, colleague_values=values, colleague_errors=invalid.errors
            )
        except Refused as refused:
            return await self._page(request, case, refused.status, problem=refused.message)
        return redirect(f"/doctor/cases/{case.uid}/review#colleagues", "colleague-invited")

    @post("/colleagues/{invite:str}/withdraw")
    async def withdraw(
        self, request: Request, uid: FromPath[str], invite: FromPath[str]
    ) -> Template | Redirect:
        case = await self._case(request, uid)
        try:
            await colleagues.withdraw(case, request.user, invite, ip=client_ip(request))
        except colleagues.InviteNotFound:
            raise NotFoundException() from None
        return redirect(f"/doctor/cases/{case.uid}/review#colleagues", "colleague-withdrawn")


class ConsultController(Controller):
    """The colleague's side: the case to read (read-only) and their answer."""

    path = "/doctor/consults"
    guards = [role_guard(DOCTOR)]

    async def _page(
        self, request: Request, invite: str, status: int = 200, **extra: Any
    ) -> Template:
        try:
            case, row = await colleagues.consult(request.user, invite, ip=client_ip(request))
        except colleagues.InviteNotFound:
            await record_denied(request, reason="not_invited")
            raise NotFoundException() from None
        return page(
            request,
            "doctor/consult.html",
            status,
            case=case,
            invite=row,
            asked_by=await colleagues.name_of(row.invited_by),
            concurs=colleagues.CONCURS,
            subject=await cases.subject_of(case),
            age=assignment.subject_age(case, assignment.today()),
            answers=cases.answers_of(case),
            questions=cases.questions_of(case),
            **await records_page(request, case, f"/doctor/consults/{row.uid}"),
            values=extra.pop("values", {}),
            errors=extra.pop("errors", {}),
            **extra,
        )

    @get("/{invite:str}")
    async def show(self, request: Request, invite: FromPath[str]) -> Template:
        return await self._page(request, invite)

    @post("/{invite:str}")
    async def answer(self, request: Request, invite: FromPath[str]) -> Template | Redirect:
        values = await form_data(request)
        try:
            await colleagues.comment(request.user, invite, values, ip=client_ip(request))
        except colleagues.InviteNotFound:
            await record_denied(request, reason="not_invited")
            raise NotFoundException() from None
        except InvalidInput as invalid:
            return await self._page(request, invite, 400, values=values, errors=invalid.errors)
        return redirect(f"/doctor/consults/{invite}", "colleague-answered")


ROUTES = [ReviewController, ConsultController]

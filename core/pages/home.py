"""Public pages (home), the signed-in landing page and a health check."""

from __future__ import annotations

import functools

from litestar import Request, get
from litestar.response import Template

from core.assignment import service as assignment
from core.cases import service as cases
from core.cases.states import PATIENT_STATUS
from core.pages.staff import CASE_CURSOR, queue_page
from core.payments import service as payments
from core.reviews import service as reviews
from core.roles import COORDINATOR, DOCTOR, PATIENT
from core.security import signed_in
from core.web import Page, page, page_request, paginate


@get("/", name="home")
async def home(request: Request) -> Template:
    specialties = request.app.state.plugins.specialties()
    rules = [rule for rule in await payments.fee_rules(active_only=True) if not rule.specialty]
    rules.sort(key=lambda rule: rule.country == "")  # "everyone else" last
    fees = [payments.Quote(rule.label, rule.currency, rule.amount_minor) for rule in rules]
    return page(request, "pages/home.html", specialties=specialties, fees=fees)


@get("/dashboard", guards=[signed_in])
async def dashboard(request: Request) -> Template:
    """A patient's own cases, newest first; a coordinator's received cases, in triage order
    (the received queue); a page at a time, in one query for the cases. A doctor's cases:
    offers to answer first, then accepted cases by due date (as many as the doctor takes)."""
    user = request.user
    found: Page[cases.CaseLine] = Page([])
    mine = await assignment.doctor_cases(user) if user.role == DOCTOR else []
    signed = await reviews.recently_signed(user) if user.role == DOCTOR else []
    if user.role == PATIENT:
        # The cursor only positions the query; cases_of keeps it to this patient's cases.
        fetch = functools.partial(cases.cases_of, user)
        found = await paginate(
            fetch, page_request(request.query_params, CASE_CURSOR), cases.OWN_CASES.key
        )
    elif user.role == COORDINATOR:
        found = await queue_page("received", request.query_params)
    return page(
        request,
        "pages/dashboard.html",
        user=user,
        cases=found.rows if user.role == PATIENT else [],
        received=found.rows if user.role == COORDINATOR else [],
        doctor_cases=mine,
        signed_cases=signed,
        **found.links("/dashboard", {}),
        statuses=PATIENT_STATUS,
    )


@get("/healthz", media_type="text/plain")
async def healthz() -> str:

    from core.accounts.tables import User

    await User.count()  # the database answers
    return "ok"


ROUTES = [home, dashboard, healthz]

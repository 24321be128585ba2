"""Public pages (home), the signed-in landing page and a health check."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Template

from core.cases import service as cases
from core.cases.states import PATIENT_STATUS, RECEIVED
from core.payments import service as payments
from core.roles import ADMIN, COORDINATOR, PATIENT
from core.security import signed_in
from core.web import page


@get("/", name="home")
async def home(request: Request) -> Template:
    specialties = request.app.state.plugins.specialties()
    rules = [rule for rule in await payments.fee_rules(active_only=True) if not rule.specialty]
    rules.sort(key=lambda rule: rule.country == "")  # "everyone else" last
    fees = [payments.Quote(rule.label, rule.currency, rule.amount_minor) for rule in rules]
    return page(request, "pages/home.html", specialties=specialties, fees=fees)


@get("/dashboard", guards=[signed_in])
async def dashboard(request: Request) -> Template:
    user = request.user
    own_cases = await cases.cases_of(user) if user.role == PATIENT else []
    received = await cases.cases_in([RECEIVED]) if user.role in (COORDINATOR, ADMIN) else []
    return page(
        request,
        "pages/dashboard.html",
        user=user,
        cases=own_cases,
        received=received,
        statuses=PATIENT_STATUS,
    )


@get("/healthz", media_type="text/plain")
async def healthz() -> str:

    from core.accounts.tables import User

    await User.count()  # the database answers
    return "ok"


ROUTES = [home, dashboard, healthz]

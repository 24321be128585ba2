"""Public pages (home), the signed-in landing page and a health check."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Template

from core.cases import service as cases
from core.cases.states import PATIENT_STATUS
from core.payments.fees import DEFAULT_FEES
from core.security import PATIENT, signed_in
from core.web import page


@get("/", name="home")
async def home(request: Request) -> Template:
    specialties = request.app.state.plugins.specialties()
    return page(request, "pages/home.html", specialties=specialties, fees=DEFAULT_FEES)


@get("/dashboard", guards=[signed_in])
async def dashboard(request: Request) -> Template:
    user = request.user
    own_cases = await cases.cases_of(user) if user.role == PATIENT else []
    return page(
        request,
        "pages/dashboard.html",
        user=user,
        cases=own_cases,
        statuses=PATIENT_STATUS,
        specialties={s.slug: s for s in request.app.state.plugins.specialties()},
    )


@get("/healthz", media_type="text/plain")
async def healthz() -> str:

    from core.accounts.tables import User

    await User.count()  # the database answers
    return "ok"


ROUTES = [home, dashboard, healthz]

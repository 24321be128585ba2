"""Public pages (home), the signed-in landing page and a health check."""

from __future__ import annotations

from litestar import Request, get
from litestar.response import Template

from core.payments.fees import DEFAULT_FEES
from core.security import signed_in
from core.web import page


@get("/", name="home")
async def home(request: Request) -> Template:
    specialties = request.app.state.plugins.specialties()
    return page(request, "pages/home.html", specialties=specialties, fees=DEFAULT_FEES)


@get("/dashboard", guards=[signed_in])
async def dashboard(request: Request) -> Template:
    return page(request, "pages/dashboard.html", user=request.user)


@get("/healthz", media_type="text/plain")
async def healthz() -> str:

    from core.accounts.tables import User

    await User.count()  # the database answers
    return "ok"


ROUTES = [home, dashboard, healthz]

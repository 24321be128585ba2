"""The application factory: `create_app(settings)` wires every domain together."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from litestar import Litestar, Request
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.config.csrf import CSRFConfig
from litestar.logging import LoggingConfig
from litestar.middleware import ASGIMiddleware
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp, Receive, Scope, Send

from core import context, db
from core.accounts import passwords
from core.accounts import service as accounts
from core.assignment import service as assignment
from core.context import AppContext
from core.error_pages import exception_handlers, render_error
from core.events import Events
from core.keys import derive_key
from core.plugins import PluginHost
from core.reports import signing
from core.schedule.service import Periodic
from core.security import CurrentUserMiddleware, security_headers, session_config
from core.settings import Settings, load_settings
from core.static_files import static_files_router
from core.web import install_template_helpers

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"

# Paths whose POSTs count against the per-IP limit on sign-in, registration and resets.
# Forms a stranger can post guesses to: sign-in, sign-up, reset, and a shared report's code.
THROTTLED_PATHS = ("/login", "/register", "/reset", "/shared")


def periodic_jobs(records: Any) -> list[Periodic]:
    """The app's timed work (core/schedule/service.py), each run once across every process."""
    from core.cases import escalation
    from core.documents import resumable
    from core.pages import attention

    async def purge_abandoned_uploads() -> int:
        return await resumable.purge_expired(records)

    async def expire_offers() -> int:
        total = 0
        while (lapsed := await assignment.expire_offers(50)) > 0:
            total += lapsed
            if lapsed < 50:
                break
        return total

    from core.reports import service as reports

    return [
        Periodic(
            "issue_reports",
            timedelta(minutes=1),
            reports.issue_pending,
            "Report PDFs whose first render failed are made again; reports no longer held for "
            "a call are sent to the patient.",
        ),
        Periodic(
            "expire_offers",
            timedelta(minutes=1),
            expire_offers,
            "Offers not answered in time move on to the next doctor.",
        ),
        Periodic(
            "turnaround_alerts",
            timedelta(minutes=15),
            escalation.run,
            "Cases at risk alert the coordinators; overdue ones the coordinators, the department "
            "lead and the patient (a later date). Once for each due date.",
        ),
        Periodic(
            "digests",
            timedelta(minutes=5),
            attention.send_digests,
            "Each staff member's daily digest of what needs them, at their hour.",
            first_after=timedelta(minutes=5),  # a start is not a reason to send one
        ),
        Periodic(
            "planner_statistics",
            timedelta(days=1),
            db.analyze,
            "SQLite's statistics, which its query planner needs to use the right indexes.",
            first_after=timedelta(hours=1),  # not at every start: a day's cases change little
        ),
        Periodic(
            "purge_abandoned_uploads",
            timedelta(hours=1),
            purge_abandoned_uploads,
            "Uploads left unfinished past their time are deleted, with their parts.",
        ),
    ]


def _stores(settings: Settings) -> dict[str, Store]:
    if settings.redis_url:
        redis = RedisStore.with_client(url=settings.redis_url, namespace="consilium")
        return {
            "sessions": redis.with_namespace("sessions"),
            "rate_limit": redis.with_namespace("rl"),
        }
    return {
        "sessions": FileStore(settings.var_dir / "sessions", create_directories=True),
        "rate_limit": MemoryStore(),
    }


def _template_config(settings: Settings, plugins: PluginHost) -> TemplateConfig:
    loaders = [FileSystemLoader(str(TEMPLATES)), *plugins.template_loaders()]
    # Built by hand, so autoescape must be set explicitly (docs/security.md 10).
    environment = Environment(loader=ChoiceLoader(loaders), autoescape=True)
    install_template_helpers(environment, settings, plugins.specialty)
    _install_domain_helpers(environment)
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment))


def _install_domain_helpers(environment: Environment) -> None:
    """What templates use from the domains: money as people read it, record previews, what a
    specialty plugin says about a record line."""
    from core.cases.service import DUE_WORDS, due_state, flags_of
    from core.documents.kinds import kinds_text
    from core.documents.service import describe_line, previewable, record_notes
    from core.payments.service import money

    environment.globals["case_flags"] = flags_of  # what a page may show or offer for a case
    environment.globals["money"] = money
    environment.globals["kinds_text"] = kinds_text  # what a specialty's upload box takes
    environment.globals["previewable"] = previewable
    environment.globals["record_notes"] = record_notes

    def record_detail(request: Request, case: Any, line: Any) -> Any:
        return describe_line(request.app.state.plugins, case, line, request.user)

    environment.globals["record_detail"] = record_detail
    environment.globals["offer_status"] = assignment.offer_status  # an offer's fate, in words
    environment.globals["due_state"] = due_state  # "at_risk" / "overdue" / ""
    environment.globals["due_words"] = DUE_WORDS


_frozen = False


def _freeze_start_up() -> None:
    """What start-up made (modules, templates, plugins) lives as long as the process: keep it
    out of the collector's full passes, which took 70-220 ms under report load
    (bench/reports.py). Once per process, after a collection, so no garbage is frozen (a
    process that starts many apps, as the tests do, would keep it for ever)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def _is_throttled(request) -> bool:
    return request.method == "POST" and request.url.path.startswith(THROTTLED_PATHS)


def build_context(settings: Settings, plugins: PluginHost | None = None) -> AppContext:
    """Everything services need from the running app: for create_app, a CLI command or a test.

    The domains subscribe to each other's facts here (core/events.py), in this order.
    """
    from core.cases import reception
    from core.documents.service import Records
    from core.payments import service as payments
    from core.reports import service as reports

    events = Events()
    reception.subscribe(events)  # paid, records changed → received?
    payments.subscribe(events)  # submitted → fix the fee; closed early → refund
    assignment.subscribe(events)  # received → offer it to a doctor
    reports.subscribe(events)  # signed → a report version; a hold lifted → tell the patient
    return AppContext(
        settings=settings,
        plugins=plugins or PluginHost.load(settings),
        events=events,
        open_records=lambda: Records.open(settings),
    )


class ContextMiddleware(ASGIMiddleware):
    """Makes the app's context current while it handles a request (core/context.py)."""

    def __init__(self, app_context: AppContext) -> None:
        self.app_context = app_context

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        with context.use(self.app_context):
            await next_app(scope, receive, send)


def create_app(settings: Settings | None = None, plugins: PluginHost | None = None) -> Litestar:
    """The app for `settings` (from the environment when None), with `plugins` (the installed
    ones when None: tests pass their own)."""
    from core.accounts.routes import ROUTES as ACCOUNT_ROUTES
    from core.admin.audit import ROUTES as AUDIT_ROUTES
    from core.admin.routes import ROUTES as ADMIN_ROUTES
    from core.documents.provider_routes import ROUTES as PROVIDER_ROUTES
    from core.documents.routes import ROUTES as DOCUMENT_ROUTES
    from core.documents.service import UploadRefused
    from core.documents.storage import S3Store
    from core.notifications.worker import OutboxWorker
    from core.pages import ROUTES as PAGE_ROUTES
    from core.pages.verify import ROUTES as VERIFY_ROUTES
    from core.payments.routes import ROUTES as PAYMENT_ROUTES
    from core.schedule.service import Scheduler

    settings = settings or load_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    db.configure_database(settings)
    passwords.configure_concurrency(settings.password_hash_concurrency)
    app_context = build_context(settings, plugins)
    plugins, records = app_context.plugins, app_context.records
    # Reset requests are resolved off the request, at once: its timing must not reveal an
    # account. Timed work runs on the schedule, once across every app process.
    scheduler = Scheduler(periodic_jobs(records))
    worker = OutboxWorker(settings, jobs=[accounts.send_password_resets], scheduler=scheduler)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # The worker's task, started here, inherits the context.
        token = context.activate(app_context)
        try:
            if isinstance(records.store, S3Store):
                # A new deployment's bucket is created here (a no-op when it exists); wrong S3
                # settings stop the start instead of failing the first patient's upload.
                try:
                    await records.store.ensure_bucket()
                except BaseException:
                    await records.store.aclose()
                    raise
            # A bad report signing key or certificate stops the start, not the first report.
            signing.load_material(settings)
            await db.start_pool(settings)
            await worker.start()
            _freeze_start_up()
            try:
                yield
            finally:
                await worker.stop()
                await records.store.aclose()
                await db.close_pool()
        finally:
            context.deactivate(token)

    static_routers = [
        static_files_router("/static", STATIC, "static"),
        *plugins.static_routers(),
    ]

    app = Litestar(
        route_handlers=[
            *PAGE_ROUTES,
            *ACCOUNT_ROUTES,
            *ADMIN_ROUTES,
            *AUDIT_ROUTES,
            *DOCUMENT_ROUTES,
            *PROVIDER_ROUTES,
            *PAYMENT_ROUTES,
            *VERIFY_ROUTES,
            *static_routers,
        ],
        lifespan=[lifespan],
        debug=settings.debug,
        template_config=_template_config(settings, plugins),
        plugins=[HTMXPlugin()],
        stores=_stores(settings),
        middleware=[
            ContextMiddleware(app_context),
            session_config(settings).middleware,
            RateLimitConfig(
                rate_limit=("minute", settings.login_rate_per_minute),
                check_throttle_handler=_is_throttled,
                store="rate_limit",
            ).middleware,
            CurrentUserMiddleware(settings, accounts.get_active_user),
        ],
        csrf_config=CSRFConfig(
            secret=derive_key(settings, "csrf").hex(),
            cookie_name=f"{settings.cookie_prefix}csrftoken",
            cookie_secure=settings.secure_cookies,
            cookie_httponly=True,
            cookie_samesite="lax",
            header_name="x-csrftoken",
        ),
        allowed_hosts=AllowedHostsConfig(allowed_hosts=settings.hosts),
        before_send=[security_headers(settings)],
        exception_handlers={
            **exception_handlers(),
            UploadRefused: lambda request, exc: render_error(request, exc.status, exc.message),
        },
        request_max_body_size=settings.max_request_bytes,
        logging_config=LoggingConfig(
            configure_root_logger=False,
            loggers={"consilium": {"level": settings.log_level, "handlers": ["queue_listener"]}},
        ),
        openapi_config=None,
    )
    app.state.context = app_context
    app.state.settings = settings
    app.state.plugins = plugins
    app.state.outbox = worker
    app.state.scheduler = scheduler
    app.state.records = records
    logging.getLogger("consilium").debug("app created")
    return app

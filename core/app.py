"""The application factory: `create_app(settings)` wires every domain together."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from litestar import Litestar
from litestar.config.allowed_hosts import AllowedHostsConfig
from litestar.config.csrf import CSRFConfig
from litestar.logging import LoggingConfig
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig

from core import db, runtime
from core.accounts import passwords
from core.accounts import service as accounts
from core.errors import exception_handlers, render_error
from core.plugins import PluginHost
from core.security import (
    CurrentUserMiddleware,
    derive_key,
    security_headers,
    session_config,
)
from core.settings import Settings, load_settings
from core.static_files import static_files_router
from core.web import install_template_helpers

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"

# Paths whose POSTs count against the per-IP limit on sign-in, registration and resets.
THROTTLED_PATHS = ("/login", "/register", "/reset")


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
    # Built by hand, so autoescape must be set explicitly (SECURITY.md 10).
    environment = Environment(loader=ChoiceLoader(loaders), autoescape=True)
    install_template_helpers(environment, settings, plugins.specialty)
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment))


def _is_throttled(request) -> bool:
    return request.method == "POST" and request.url.path.startswith(THROTTLED_PATHS)


def create_app(settings: Settings | None = None) -> Litestar:
    from core.accounts.routes import ROUTES as ACCOUNT_ROUTES
    from core.admin.routes import ROUTES as ADMIN_ROUTES
    from core.audit.routes import ROUTES as AUDIT_ROUTES
    from core.cases.routes import ROUTES as CASE_ROUTES
    from core.documents.provider_routes import ROUTES as PROVIDER_ROUTES
    from core.documents.routes import ROUTES as DOCUMENT_ROUTES
    from core.documents.service import Records, UploadRefused
    from core.documents.storage import S3Store
    from core.notifications.worker import OutboxWorker
    from core.pages import ROUTES as PAGE_ROUTES
    from core.payments.routes import ROUTES as PAYMENT_ROUTES

    settings = settings or load_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    db.configure_database(settings)
    passwords.configure_concurrency(settings.password_hash_concurrency)
    plugins = PluginHost.load(settings)
    runtime.configure_plugins(plugins)
    # Reset requests are resolved off the request: its timing must not reveal an account.
    worker = OutboxWorker(settings, jobs=[accounts.send_password_resets])
    records = Records.open(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if isinstance(records.store, S3Store):
            # A new deployment's bucket is created here (a no-op when it exists); wrong S3
            # settings stop the start instead of failing the first patient's upload.
            try:
                await records.store.ensure_bucket()
            except BaseException:
                await records.store.aclose()
                raise
        await db.start_pool(settings)
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await records.store.aclose()
            await db.close_pool()

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
            *CASE_ROUTES,
            *DOCUMENT_ROUTES,
            *PROVIDER_ROUTES,
            *PAYMENT_ROUTES,
            *static_routers,
        ],
        lifespan=[lifespan],
        debug=settings.debug,
        template_config=_template_config(settings, plugins),
        plugins=[HTMXPlugin()],
        stores=_stores(settings),
        middleware=[
            session_config(settings).middleware,
            RateLimitConfig(
                rate_limit=("minute", settings.login_rate_per_minute),
                check_throttle_handler=_is_throttled,
                store="rate_limit",
            ).middleware,
            CurrentUserMiddleware(settings),
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
    app.state.settings = settings
    app.state.plugins = plugins
    app.state.outbox = worker
    app.state.records = records
    logging.getLogger("consilium").debug("app created")
    return app

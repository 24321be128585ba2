"""Piccolo's configuration: the app registry, and the engine chosen from the settings.

`core.db.configure_database` replaces DB when the app (or a test) starts with other settings.
"""

from piccolo.conf.apps import AppRegistry

from core.db import build_engine
from core.settings import load_settings

DB = build_engine(load_settings())

APP_REGISTRY = AppRegistry(
    apps=[
        "core.accounts.piccolo_app",
        "core.audit.piccolo_app",
        "core.notifications.piccolo_app",
        "core.cases.piccolo_app",
        "core.documents.piccolo_app",
        "core.payments.piccolo_app",
        "core.assignment.piccolo_app",
        "core.completeness.piccolo_app",
        "core.schedule.piccolo_app",
        "core.reviews.piccolo_app",
        "core.reports.piccolo_app",
    ]
)

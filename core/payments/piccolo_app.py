import os

from piccolo.conf.apps import AppConfig

from core.payments.tables import (
    CaseFee,
    FeeRule,
    LedgerEntry,
    Payment,
    ReceiptCounter,
    WebhookEvent,
)

APP_CONFIG = AppConfig(
    app_name="payments",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[FeeRule, CaseFee, Payment, LedgerEntry, WebhookEvent, ReceiptCounter],
    migration_dependencies=["core.accounts.piccolo_app", "core.cases.piccolo_app"],
    commands=[],
)

import os

from piccolo.conf.apps import AppConfig

from core.cases.tables import Case, CaseEvent, CasePause, CaseReader, ReferenceCounter

APP_CONFIG = AppConfig(
    app_name="cases",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Case, CaseEvent, CasePause, CaseReader, ReferenceCounter],
    migration_dependencies=["core.accounts.piccolo_app"],
    commands=[],
)

import os

from piccolo.conf.apps import AppConfig

from core.completeness.tables import MaterialArrival, RecordsRequest

APP_CONFIG = AppConfig(
    app_name="completeness",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[RecordsRequest, MaterialArrival],
    migration_dependencies=["core.cases.piccolo_app", "core.documents.piccolo_app"],
    commands=[],
)

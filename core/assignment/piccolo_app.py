import os

from piccolo.conf.apps import AppConfig

from core.assignment.tables import Offer

APP_CONFIG = AppConfig(
    app_name="assignment",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Offer],
    migration_dependencies=["core.cases.piccolo_app"],
    commands=[],
)

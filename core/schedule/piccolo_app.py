import os

from piccolo.conf.apps import AppConfig

from core.schedule.tables import ScheduledJob

APP_CONFIG = AppConfig(
    app_name="schedule",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[ScheduledJob],
    migration_dependencies=[],
    commands=[],
)

import os

from piccolo.conf.apps import AppConfig

from core.reports.tables import Report, ReportShare, ReportVersion, ShareOpening

APP_CONFIG = AppConfig(
    app_name="reports",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Report, ReportVersion, ReportShare, ShareOpening],
    migration_dependencies=["core.reviews.piccolo_app"],
    commands=[],
)

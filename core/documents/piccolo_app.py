import os

from piccolo.conf.apps import AppConfig

from core.documents.tables import Document, DocumentUsage, ProviderLink, UploadSession

APP_CONFIG = AppConfig(
    app_name="documents",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[ProviderLink, Document, UploadSession, DocumentUsage],
    migration_dependencies=["core.cases.piccolo_app"],
    commands=[],
)

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-08T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "the asker's role on a request: the reviewing doctor's questions"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="completeness", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="RecordsRequest",
        tablename="completeness_request",
        column_name="asked_by_role",
        db_column_name="asked_by_role",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "default": "coordinator",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
            "length": 16,
        },
        schema=None,
    )

    return manager

import os

from piccolo.conf.apps import AppConfig

from core.accounts.tables import (
    AuthToken,
    DoctorAway,
    DoctorProfile,
    DoctorSpecialty,
    LoginThrottle,
    MessageSettings,
    RecoveryCode,
    ResetRequest,
    User,
)

APP_CONFIG = AppConfig(
    app_name="accounts",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[
        User,
        DoctorSpecialty,
        DoctorProfile,
        DoctorAway,
        MessageSettings,
        RecoveryCode,
        AuthToken,
        LoginThrottle,
        ResetRequest,
    ],
    migration_dependencies=[],
    commands=[],
)

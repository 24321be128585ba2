import os

from piccolo.conf.apps import AppConfig

from core.reviews.tables import (
    ColleagueInvite,
    Communication,
    ReportHold,
    ReviewDraft,
    SignedReview,
    UrgentFinding,
)

APP_CONFIG = AppConfig(
    app_name="reviews",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[
        ReviewDraft,
        SignedReview,
        UrgentFinding,
        Communication,
        ReportHold,
        ColleagueInvite,
    ],
    migration_dependencies=["core.cases.piccolo_app", "core.accounts.piccolo_app"],
    commands=[],
)

"""Piccolo tables and their migrations must not drift apart.

Tests build every database by running the migrations, so a column added to a table class
without a migration would fail only at run time, in production. Piccolo's auto-migration differ
compares each app's table classes with the schema its migrations build: any statement it would
write is drift.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from piccolo.apps.migrations.commands.new import AutoMigrationManager
from piccolo.conf.apps import AppConfig, Finder

import piccolo_conf

APPS = Finder().get_app_configs()
CORE = Path(__file__).resolve().parent.parent / "core"


@pytest.mark.parametrize("app_config", APPS, ids=[app.app_name for app in APPS])
async def test_tables_match_their_migrations(app_config: AppConfig) -> None:
    # auto_input="n": never take a change for a rename (the differ would ask on stdin).
    changes = await AutoMigrationManager(auto_input="n").get_alter_statements(app_config=app_config)
    statements = [statement for change in changes for statement in change.statements]
    assert statements == [], (
        f"{app_config.app_name}: tables differ from migrations; write one with "
        f"`piccolo migrations new {app_config.app_name} --auto`"
    )


def test_every_domain_with_tables_is_registered() -> None:
    with_tables = {f"core.{path.parent.name}.piccolo_app" for path in CORE.glob("*/tables.py")}
    assert with_tables <= set(piccolo_conf.APP_REGISTRY.apps)

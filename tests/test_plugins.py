"""The plugin contract: entry points, hooks, broken plugins, documentation."""

from __future__ import annotations

import re
from pathlib import Path

from core import hookspecs
from core.hookspecs import hookimpl
from core.plugins import PluginHost
from core.specialty import Specialty
from tests.conftest import make_settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


class Cardiology:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [Specialty(slug="cardiology", title="Cardiology", summary="Choose this when…")]


def test_builtin_specialties_load_through_entry_points(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None))
    assert {p.name for p in host.plugins} >= {"general", "surgical", "pathology", "radiology"}
    assert all(p.error is None and p.hooks == ["consilium_specialties"] for p in host.plugins)


def test_hook_consilium_specialties(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("cardiology", Cardiology())])
    slugs = [s.slug for s in host.specialties()]
    assert "cardiology" in slugs and "radiology" in slugs
    assert len(slugs) == len(set(slugs))


def test_allowlist_limits_loaded_plugins(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None, plugins_allowlist=["radiology"]))
    assert [s.slug for s in host.specialties()] == ["radiology"]


def test_every_hook_is_documented_and_tested() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("consilium_")]
    docs = DOCS.read_text()
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    for hook in hooks:
        assert re.search(rf"^### `{hook}\(", docs, re.M), f"{hook} is not documented"
        assert f"def test_hook_{hook}(" in tests, f"{hook} has no test_hook_{hook} test"

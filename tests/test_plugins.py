"""The plugin contract: entry points, hooks, broken plugins, the scaffold, documentation.

Plugins under tests/plugin_fixtures/ are "installed" by putting their folder on sys.path: each
carries a *.dist-info with entry_points.txt, so discovery goes through importlib.metadata exactly
as for a package installed with pip.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from jinja2 import ChoiceLoader, Environment
from markupsafe import escape

from core import hookspecs
from core.app import create_app
from core.hookspecs import hookimpl
from core.plugins import PluginHost
from core.scaffold import new_plugin
from core.settings import Settings
from core.specialty import Specialty
from tests.conftest import make_settings, open_client
from tests.support import make_person, post_form, sign_in

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"
ALL_HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("consilium_"))
# What a specialty plugin implements; core's own "payments" entry point offers providers only.
SPECIALTY_HOOKS = [name for name in ALL_HOOKS if name != "consilium_payment_providers"]
FIXTURE_MODULES = (
    "consilium_dermatology",
    "consilium_broken_import",
    "consilium_broken_hook",
    "consilium_unknown_hook",
)


class Cardiology:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [Specialty(slug="cardiology", title="Cardiology", summary="Choose this when…")]


def forget_modules(*names: str) -> None:
    for name in list(sys.modules):
        if name.split(".", 1)[0] in names:
            del sys.modules[name]


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Make fixture folders' packages importable and their entry points discoverable."""

    def add(*folders: str) -> None:
        for folder in folders:
            monkeypatch.syspath_prepend(str(FIXTURES / folder))

    yield add
    forget_modules(*FIXTURE_MODULES)


def plugin_info(host: PluginHost, name: str):
    return next(p for p in host.plugins if p.name == name)


# --- discovery ---------------------------------------------------------------------------------


def test_builtin_specialties_load_through_entry_points(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None))
    assert {p.name for p in host.plugins} >= {"general", "surgical", "pathology", "radiology"}
    assert all(p.error is None for p in host.plugins)
    hooks = {p.name: sorted(p.hooks) for p in host.plugins}
    assert hooks.pop("payments") == ["consilium_payment_providers"]
    assert all(found == SPECIALTY_HOOKS for found in hooks.values())


def test_hook_consilium_specialties(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("cardiology", Cardiology())])
    slugs = [s.slug for s in host.specialties()]
    assert "cardiology" in slugs and "radiology" in slugs
    assert len(slugs) == len(set(slugs))


def test_allowlist_limits_loaded_plugins(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None, plugins_allowlist=["radiology"]))
    assert [s.slug for s in host.specialties()] == ["radiology"]


def test_installed_package_is_discovered_with_its_version(tmp_path, install) -> None:
    install("installed")
    host = PluginHost.load(make_settings(tmp_path, None))
    info = plugin_info(host, "dermatology")
    assert (info.module, info.version, info.error) == ("consilium_dermatology", "1.0", None)
    assert sorted(info.hooks) == SPECIALTY_HOOKS
    specialty = host.specialty("dermatology")
    assert specialty is not None and specialty.title == "Dermatology second opinion"
    environment = Environment(loader=ChoiceLoader(host.template_loaders()), autoescape=True)
    assert "Before you start" in environment.get_template("dermatology/intake_intro.html").render()


async def test_installed_plugin_is_served(settings: Settings, install) -> None:
    install("installed")
    app = create_app(settings)  # after the sys.path change: the app loads its plugins itself
    async with open_client(app) as client:
        assert "Dermatology second opinion" in (await client.get("/")).text
        await sign_in(client, await make_person("patient", "skin@example.com"))
        kinds = await client.get("/requests/new")
        assert 'value="dermatology"' in kinds.text and "Dermatology second opinion" in kinds.text
        started = await post_form(client, "/requests/new", {"specialty": "dermatology"})
        assert started.status_code == 303, started.text
        uid = started.headers["location"].split("/")[2]

        intake = await client.get(f"/requests/{uid}/intake")
        assert intake.status_code == 200
        assert "clear, well-lit photos" in intake.text  # dermatology/intake_intro.html
        for name in ("diagnosis", "site", "noticed", "biopsy", "biopsy_result"):
            assert f'name="{name}"' in intake.text, name
        assert 'id="f-biopsy_result-cond"' in intake.text  # show-if: folded until "yes"

        css = await client.get("/static/plugins/dermatology/dermatology.css")
        assert css.status_code == 200 and "dermatology-body-map" in css.text

        # The plugin's consilium_validate_intake runs on the patient's answers.
        subject = {
            "subject_kind": "self",
            "subject_birth_date": "1990-05-01",
            "subject_sex": "male",
        }
        assert (await post_form(client, f"/requests/{uid}/subject", subject)).status_code == 303
        answers = {
            "diagnosis": "Psoriasis",
            "site": "limb",
            "noticed": "1985-02-01",
            "biopsy": "no",
        }
        refused = await post_form(client, f"/requests/{uid}/intake", answers)
        assert refused.status_code == 400 and "before the patient was born" in refused.text
        accepted = await post_form(
            client, f"/requests/{uid}/intake", {**answers, "noticed": "2024-02-01"}
        )
        assert accepted.headers["location"] == f"/requests/{uid}/questions"


# --- broken plugins ----------------------------------------------------------------------------


async def test_broken_plugins_are_reported_and_skipped(settings: Settings, install) -> None:
    install("installed", "broken")
    app = create_app(settings)
    host: PluginHost = app.state.plugins

    failed_import = plugin_info(host, "broken-import")
    assert failed_import.error == "ModuleNotFoundError: No module named 'consilium_skin_atlas'"
    assert failed_import.version == "0.3" and failed_import.hooks == []
    bad_hook = plugin_info(host, "broken-hook")
    assert bad_hook.error and bad_hook.error.startswith("PluginValidationError")
    assert "birth_date" in bad_hook.error and bad_hook.hooks == []
    assert plugin_info(host, "dermatology").error is None
    slugs = {s.slug for s in host.specialties()}
    assert {"dermatology", "radiology"} <= slugs and not {"neurology", "ophthalmology"} & slugs

    async with open_client(app) as patient:
        await sign_in(patient, await make_person("patient", "still-served@example.com"))
        kinds = (await patient.get("/requests/new")).text
        assert "Dermatology second opinion" in kinds and "Radiology second opinion" in kinds
        assert "Ophthalmology" not in kinds and "Neurology" not in kinds

    async with open_client(app) as admin:
        await sign_in(admin, await make_person("admin", "plugins-admin@example.com"))
        page = await admin.get("/admin/plugins")
        assert page.status_code == 200
        assert page.text.count("Not loaded") == 2
        assert str(escape(failed_import.error)) in page.text
        assert str(escape(bad_hook.error)) in page.text


def test_plugin_with_an_unknown_hook_is_reported_and_skipped(tmp_path, install) -> None:
    """A misspelt hook name is found by pluggy only after registration (check_pending)."""
    install("installed", "unknown_hook")
    host = PluginHost.load(make_settings(tmp_path, None))
    info = plugin_info(host, "unknown-hook")
    assert info.error and info.error.startswith("PluginValidationError")
    assert "consilium_asset" in info.error
    slugs = {s.slug for s in host.specialties()}
    assert "urology" not in slugs and {"dermatology", "radiology"} <= slugs


def test_trace_logs_every_hook_call(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="consilium.plugins")
    host = PluginHost.load(make_settings(tmp_path, None, plugins_trace=True))
    host.specialties()
    assert any("consilium_specialties" in r.getMessage() for r in caplog.records)

    caplog.clear()
    PluginHost.load(make_settings(tmp_path, None)).specialties()
    assert not any("consilium_specialties" in r.getMessage() for r in caplog.records)


# --- the scaffold ------------------------------------------------------------------------------


def install_generated(root: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Do what `pip install -e` does for discovery: a dist-info holding the entry points."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    entries = project["entry-points"]["consilium"]
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = [f"{name} = {module}" for name, module in entries.items()]
    (info / "entry_points.txt").write_text("[consilium]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(root))
    return next(iter(entries.values()))


def test_scaffold_writes_a_plugin_that_loads_and_passes_its_tests(tmp_path, monkeypatch) -> None:
    result = CliRunner().invoke(new_plugin, ["heart-valve", "--directory", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "consilium-heart-valve"
    assert f"Created {root}" in result.output
    module_dir = root / "consilium_heart_valve"
    for path in (
        root / "pyproject.toml",
        module_dir / "__init__.py",
        module_dir / "templates" / "heart-valve" / "intake_intro.html",
        root / "tests" / "test_heart_valve.py",
    ):
        assert path.is_file(), path
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "consilium-heart-valve"
    assert pyproject["project"]["entry-points"]["consilium"] == {
        "heart-valve": "consilium_heart_valve"
    }
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"

    module = install_generated(root, tmp_path / "site", monkeypatch)
    try:
        host = PluginHost.load(make_settings(tmp_path / "var", None))
        info = plugin_info(host, "heart-valve")
        assert (info.module, info.version, info.error) == (module, "0.1.0", None)
        assert sorted(info.hooks) == SPECIALTY_HOOKS
        specialty = host.specialty("heart-valve")
        assert specialty is not None and specialty.title == "Heart valve second opinion"
        assert [f.name for f in specialty.intake.fields] == ["diagnosis", "diagnosis_date"]
        assert [d.key for d in specialty.required_documents] == ["report"]
        environment = Environment(loader=ChoiceLoader(host.template_loaders()), autoescape=True)
        assert (
            "Before you start" in environment.get_template("heart-valve/intake_intro.html").render()
        )

        # The generated package's own tests pass.
        path = root / "tests" / "test_heart_valve.py"
        spec = importlib.util.spec_from_file_location("generated_test_heart_valve", path)
        assert spec and spec.loader
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        tests = [value for name, value in vars(generated).items() if name.startswith("test_")]
        assert len(tests) == 3
        for test in tests:
            test()
    finally:
        forget_modules(module)


@pytest.mark.parametrize(
    "name",
    ["Cardiology", "heart_valve", "1heart", "h", "heart-", "-heart", "heart--valve", "x" * 33],
)
def test_scaffold_refuses_a_bad_name(tmp_path, name: str) -> None:
    result = CliRunner().invoke(new_plugin, ["--directory", str(tmp_path), "--", name])
    assert result.exit_code != 0
    assert "is not a valid specialty name" in result.output
    assert list(tmp_path.iterdir()) == []


def test_scaffold_refuses_to_overwrite(tmp_path) -> None:
    existing = tmp_path / "consilium-cardiology"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    result = CliRunner().invoke(new_plugin, ["cardiology", "--directory", str(tmp_path)])
    assert result.exit_code != 0 and "already exists" in result.output
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]


# --- documentation -----------------------------------------------------------------------------


def test_every_hook_is_documented_and_tested() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("consilium_")]
    docs = DOCS.read_text()
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    for hook in hooks:
        assert re.search(rf"^### `{hook}\(", docs, re.M), f"{hook} is not documented"
        assert f"def test_hook_{hook}(" in tests, f"{hook} has no test_hook_{hook} test"

"""The plugin contract: entry points, hooks, broken plugins, the scaffold, documentation.

Plugins under tests/plugin_fixtures/ are "installed" by putting their folder on sys.path: each
carries a *.dist-info with entry_points.txt, so discovery goes through importlib.metadata exactly
as for a package installed with pip. Tests that need a package outside the repository write one
into tmp_path the same way (`write_distribution`).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import io
import logging
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jinja2 import ChoiceLoader, Environment
from markupsafe import escape

from core import hookspecs
from core.app import create_app
from core.hookspecs import hookimpl
from core.plugins import CORE_ENTRY_POINTS, PluginHost
from core.scaffold import new_plugin
from core.settings import Settings
from core.specialty import Assets, Choice, DocumentFacts, RecordsDetail, Specialty
from tests.conftest import make_settings, open_client
from tests.support import make_person, post_form, sign_in

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"
ALL_HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("consilium_"))
# What each built-in implements: only the hooks it needs.
BUILTIN_HOOKS = {
    "general": ["consilium_assets", "consilium_specialties"],
    "surgical": [
        "consilium_assets",
        "consilium_specialties",
        "consilium_validate_intake",
        "consilium_validate_review",
    ],
    "pathology": [
        "consilium_assets",
        "consilium_specialties",
        "consilium_suggest_subspecialty",
        "consilium_validate_intake",
    ],
    "radiology": [
        "consilium_assets",
        "consilium_describe_records",
        "consilium_inspect_document",
        "consilium_specialties",
        "consilium_suggest_subspecialty",
        "consilium_validate_intake",
        "consilium_validate_review",
    ],
    "payments": ["consilium_payment_providers"],
}
FIXTURE_MODULES = (
    "consilium_dermatology",
    "consilium_broken_import",
    "consilium_broken_hook",
    "consilium_unknown_hook",
    "consilium_warnings",
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
    assert {p.name: sorted(p.hooks) for p in host.plugins} == BUILTIN_HOOKS
    assert all(p.error is None and not p.warnings and not p.failures for p in host.plugins)
    # No hook guards against another plugin's specialty, and none is a no-op: core calls a
    # specialty's hooks for the plugin that owns it only, and a plugin implements what it needs.
    for path in (Path(__file__).parents[1] / "plugins").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for hook in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            if not hook.name.startswith("consilium_"):
                continue
            body = [n for n in hook.body if not isinstance(n, ast.Expr)]  # minus a docstring
            no_op = len(body) == 1 and isinstance(body[0], ast.Return)
            assert not (no_op and ast.unparse(body[0]) == "return None"), (path, hook.name)
            guards = [
                n
                for n in ast.walk(hook)
                if isinstance(n, ast.Attribute) and ast.unparse(n) == "specialty.slug"
            ]
            assert not guards, (path, hook.name)


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
    assert sorted(info.hooks) == ["consilium_assets", "consilium_specialties"]
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

        # Core's date-of-birth rule the plugin declared (not_before_birth) runs on the answers.
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
    install("installed", "broken", "warnings")
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

    # What pluggy alone ignores silently: the plugin loads, with warnings.
    warned = plugin_info(host, "warnings")
    assert warned.error is None and warned.hooks == ["consilium_specialties"]
    assert warned.warnings == [
        "consilium_assets has no @hookimpl, so it is never called: add @hookimpl",
        "consilium_validate_intakes has no @hookimpl and is not a hook (did you mean "
        "consilium_validate_intake?), so it is never called",
        "report_template 'allergy/report.html' of specialty 'allergy': the plugin has no "
        "templates folder (consilium_assets)",
    ]

    async with open_client(app) as admin:
        await sign_in(admin, await make_person("admin", "plugins-admin@example.com"))
        page = await admin.get("/admin/plugins")
        assert page.status_code == 200
        assert page.text.count("Not loaded") == 2
        assert str(escape(failed_import.error)) in page.text
        assert str(escape(bad_hook.error)) in page.text
        for warning in warned.warnings:
            assert f"Warning: {escape(warning)}" in page.text


def test_plugin_with_an_unknown_hook_is_reported_and_skipped(tmp_path, install) -> None:
    """A misspelt hook name is found by pluggy only after registration (check_pending)."""
    install("installed", "unknown_hook")
    host = PluginHost.load(make_settings(tmp_path, None))
    info = plugin_info(host, "unknown-hook")
    assert info.error == (
        "PluginValidationError: unknown hook consilium_asset (did you mean consilium_assets?)"
    )
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


# --- only the hooks it needs, called for its own specialty ---------------------------------------


class Recorder:
    """A plugin with a specialty and every specialty hook, none guarded by `if specialty.slug`:
    core must call them for its own specialty only."""

    def __init__(self, slug: str) -> None:
        self.specialty = Specialty(slug=slug, title=slug.capitalize(), summary="Choose this…")
        self.calls: list[str] = []

    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [self.specialty]

    @hookimpl
    def consilium_validate_intake(self, specialty: Specialty) -> dict[str, str]:
        self.calls.append(f"validate {specialty.slug}")
        return {"field": f"{self.specialty.slug} says no"}

    @hookimpl
    def consilium_inspect_document(self, specialty: Specialty) -> DocumentFacts:
        self.calls.append(f"inspect {specialty.slug}")
        return DocumentFacts(facts={"by": self.specialty.slug})

    @hookimpl
    def consilium_describe_records(self, specialty: Specialty) -> RecordsDetail:
        self.calls.append(f"describe {specialty.slug}")
        return RecordsDetail(lines=(self.specialty.slug,))


def test_specialty_hooks_are_called_for_the_owner_only(tmp_path) -> None:
    alpha, beta = Recorder("alpha"), Recorder("beta")
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("alpha", alpha), ("beta", beta)])
    for recorder in (alpha, beta):
        specialty = recorder.specialty
        assert host.validate_intake(specialty, {}, None) == {"field": f"{specialty.slug} says no"}
        found = host.inspect_document(specialty, "pdf", io.BytesIO)
        assert found == DocumentFacts(facts={"by": specialty.slug})
        assert host.describe_records(specialty, [{}]) == RecordsDetail(lines=(specialty.slug,))
    assert alpha.calls == ["validate alpha", "inspect alpha", "describe alpha"]
    assert beta.calls == ["validate beta", "inspect beta", "describe beta"]

    # Nobody's specialty: no plugin is asked.
    stranger = Specialty(slug="stranger", title="Stranger", summary="Not offered.")
    assert host.validate_intake(stranger, {}, None) == {}
    assert host.inspect_document(stranger, "pdf", io.BytesIO) is None
    assert host.describe_records(stranger, [{}]) is None
    assert len(alpha.calls) == len(beta.calls) == 3


# --- a broken hook never takes a page down -----------------------------------------------------

PATIENT_DATA = "Jane Doe, born 1990-05-01"  # what an exception message could quote


class AsyncHooks:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [Specialty(slug="nephrology", title="Nephrology", summary="Never offered.")]

    @hookimpl
    async def consilium_validate_intake(self, values: dict[str, Any]) -> dict[str, str]:
        return {}


def test_async_hooks_are_refused_at_load(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consilium.plugins")
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("async-hooks", AsyncHooks())])
    info = plugin_info(host, "async-hooks")
    assert info.error == (
        "PluginValidationError: consilium_validate_intake is an async def: hooks must be plain "
        "def (synchronous)"
    )
    assert info.hooks == [] and host.manager.get_plugin("async-hooks") is None
    assert host.specialty("nephrology") is None and host.specialty("radiology") is not None
    assert "plugin async-hooks not loaded: PluginValidationError" in caplog.text


def test_an_awaitable_result_is_a_failure_not_a_warning(tmp_path) -> None:
    """A plugin registered on the manager directly skips the load-time check: the coroutine its
    hook returns is closed (no "never awaited" warning) and counted as a failure."""

    class Sneaky:
        @hookimpl
        def consilium_specialties(self) -> Any:
            async def later() -> list[Specialty]:
                return []

            return later()

    host = PluginHost.load(make_settings(tmp_path, None))
    host.manager.register(Sneaky(), name="sneaky")
    assert host.specialty("radiology") is not None
    [failure] = plugin_info(host, "sneaky").failures
    assert (failure.hook, failure.problem) == (
        "consilium_specialties",
        "returned a coroutine: hooks must be plain def",
    )


class RaisingSpecialties:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        raise ValueError(PATIENT_DATA)


FAULTY = Specialty(slug="faulty", title="Faulty", summary="Every other hook raises.")


class Faulty:
    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [FAULTY]

    @hookimpl
    def consilium_validate_intake(self) -> None:
        raise ValueError(PATIENT_DATA)

    @hookimpl
    def consilium_inspect_document(self) -> None:
        raise KeyError(PATIENT_DATA)

    @hookimpl
    def consilium_describe_records(self) -> None:
        raise ValueError(PATIENT_DATA)

    @hookimpl
    def consilium_assets(self) -> None:
        raise OSError(PATIENT_DATA)

    @hookimpl
    def consilium_payment_providers(self) -> None:
        raise RuntimeError(PATIENT_DATA)


def test_a_hook_that_raises_is_left_out_and_reported(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="consilium.plugins")
    settings = make_settings(tmp_path, None)
    extra = [("raising", RaisingSpecialties()), ("faulty", Faulty())]
    host = PluginHost.load(settings, extra=extra)
    assert plugin_info(host, "raising").error is None  # it loads: the failure is at call time

    # Each call is built without the failing plugin's part, and the others' parts are there.
    assert {s.slug for s in host.specialties()} == {*BUILTIN_HOOKS, "faulty"} - {"payments"}
    assert host.validate_intake(FAULTY, {}, None) == {}
    assert host.inspect_document(FAULTY, "pdf", io.BytesIO) == DocumentFacts(
        flags=("could not be read automatically",)
    )
    assert host.describe_records(FAULTY, [{}]) is None
    assert {a.name for a in host.assets()} == {"general", "surgical", "pathology", "radiology"}
    assert {"sandbox", "offline"} <= set(host.payment_providers(settings))

    # Reported per plugin: the hook and the type of error, when, and how often.
    raising = plugin_info(host, "raising").failures
    assert [(f.hook, f.problem) for f in raising] == [
        ("consilium_specialties", "raised ValueError")
    ]
    count = raising[0].count  # at load, and for each lookup of a specialty above
    assert count >= 2
    assert "faulty" in {s.slug for s in host.specialties()}
    assert plugin_info(host, "raising").failures[0].count == count + 1
    faulty = {f.hook: f.problem for f in plugin_info(host, "faulty").failures}
    assert faulty == {
        "consilium_validate_intake": "raised ValueError",
        "consilium_inspect_document": "raised KeyError",
        "consilium_describe_records": "raised ValueError",
        "consilium_assets": "raised OSError",
        "consilium_payment_providers": "raised RuntimeError",
    }
    # Logged with the plugin's name and where, never the message.
    assert re.search(
        r"plugin raising: consilium_specialties raised ValueError \(tests/test_plugins.py:\d+\)",
        caplog.text,
    )
    assert "plugin faulty: consilium_inspect_document raised KeyError" in caplog.text
    assert "Jane Doe" not in caplog.text and "Jane Doe" not in repr(host.plugins)


def test_a_hook_that_returns_the_wrong_thing_is_left_out(tmp_path) -> None:
    class Careless:
        @hookimpl
        def consilium_specialties(self) -> Any:
            return FAULTY  # not in a list

    class Sloppy:
        @hookimpl
        def consilium_specialties(self) -> list[Specialty]:
            return [dataclass_copy(FAULTY, slug="sloppy")]

        @hookimpl
        def consilium_validate_intake(self) -> Any:
            return ["Check the date."]  # not {field: message}

    extra = [("careless", Careless()), ("sloppy", Sloppy())]
    host = PluginHost.load(make_settings(tmp_path, None), extra=extra)
    assert host.specialty("faulty") is None
    sloppy = host.specialty("sloppy")
    assert sloppy is not None and host.validate_intake(sloppy, {}, None) == {}
    [careless] = plugin_info(host, "careless").failures
    assert careless.problem == "returned Specialty, not a list of Specialty"
    [wrong] = plugin_info(host, "sloppy").failures
    assert wrong.problem == "returned list, not a dict of field name → message, or None"


def dataclass_copy(specialty: Specialty, **changes: Any) -> Specialty:
    return dataclasses.replace(specialty, **changes)


def test_functions_without_hookimpl_are_reported(tmp_path) -> None:
    class Forgetful:
        @hookimpl
        def consilium_specialties(self) -> list[Specialty]:
            return [dataclass_copy(FAULTY, slug="forgetful")]

        def consilium_assets(self) -> None:  # no @hookimpl
            return None

        @staticmethod
        def consilium_specialites() -> None:  # no @hookimpl, misspelt
            return None

        def consilium_helper(self) -> None:  # a helper named like a hook, nothing close
            return None

    host = PluginHost.load(make_settings(tmp_path, None), extra=[("forgetful", Forgetful())])
    info = plugin_info(host, "forgetful")
    assert info.error is None and info.hooks == ["consilium_specialties"]
    assert info.warnings == [
        "consilium_assets has no @hookimpl, so it is never called: add @hookimpl",
        "consilium_helper has no @hookimpl and is not a hook, so it is never called",
        "consilium_specialites has no @hookimpl and is not a hook (did you mean "
        "consilium_specialties?), so it is never called",
    ]


def test_a_misspelt_hook_is_refused_with_a_suggestion(tmp_path) -> None:
    class Misspelt:
        @hookimpl
        def consilium_specialties(self) -> list[Specialty]:
            return [dataclass_copy(FAULTY, slug="misspelt")]

        @hookimpl
        def consilium_describe_record(self) -> None:
            return None

    host = PluginHost.load(make_settings(tmp_path, None), extra=[("misspelt", Misspelt())])
    assert plugin_info(host, "misspelt").error == (
        "PluginValidationError: unknown hook consilium_describe_record (did you mean "
        "consilium_describe_records?)"
    )
    assert host.specialty("misspelt") is None


def test_report_template_is_checked_at_load(tmp_path) -> None:
    templates = tmp_path / "templates"
    (templates / "cardio").mkdir(parents=True)
    (templates / "cardio" / "report.html").write_text("<h1>Report</h1>")

    def plugin(slug: str, template: str, folder: Path | None) -> object:
        class WithReport:
            @hookimpl
            def consilium_specialties(self) -> list[Specialty]:
                return [dataclass_copy(FAULTY, slug=slug, report_template=template)]

            @hookimpl
            def consilium_assets(self) -> Assets:
                return Assets(name=slug, templates=folder)

        return WithReport()

    extra = [
        ("found", plugin("cardio", "cardio/report.html", templates)),
        ("missing", plugin("missing", "missing/report.html", templates)),
        ("outside", plugin("outside", "../templates/cardio/report.html", templates)),
        ("no-folder", plugin("no-folder", "no-folder/report.html", None)),
    ]
    host = PluginHost.load(make_settings(tmp_path / "var", None), extra=extra)
    assert plugin_info(host, "found").warnings == []
    assert plugin_info(host, "missing").warnings == [
        f"report_template 'missing/report.html' of specialty 'missing' is not in the plugin's "
        f"templates folder {templates}"
    ]
    assert "is not in the plugin's templates folder" in plugin_info(host, "outside").warnings[0]
    assert plugin_info(host, "no-folder").warnings == [
        "report_template 'no-folder/report.html' of specialty 'no-folder': the plugin has no "
        "templates folder (consilium_assets)"
    ]
    # A warning, not a refusal: the declaration has no effect yet (docs/plugins.md).
    assert host.specialty("missing") is not None


def test_a_slug_offered_twice_is_reported(tmp_path) -> None:
    class Copy:
        @hookimpl
        def consilium_specialties(self) -> list[Specialty]:
            return [dataclass_copy(FAULTY, slug="general", title="Another general")]

    host = PluginHost.load(make_settings(tmp_path, None), extra=[("copy", Copy())])
    # The last registered plugin is asked first; the other one is told its slug is not used.
    assert host.specialty("general").title == "Another general"
    assert plugin_info(host, "general").warnings == [
        "specialty 'general' is not offered: plugin 'copy' offers the same slug"
    ]


# --- testing a plugin as docs/plugins.md says ----------------------------------------------------


def write_distribution(
    site: Path, name: str, version: str, entry_points: dict[str, str], files: dict[str, str]
) -> None:
    """Install a distribution into `site` as pip would for discovery: its files and a
    `*.dist-info` holding METADATA and entry_points.txt (put `site` on sys.path)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"{entry} = {module}" for entry, module in entry_points.items()]
    (info / "entry_points.txt").write_text("[consilium]\n" + "\n".join(lines) + "\n")
    for relative, text in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_extra_replaces_the_installed_plugin_of_the_same_name(tmp_path, install) -> None:
    install("installed")
    replacement = Recorder("dermatology")
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("dermatology", replacement)])
    info = plugin_info(host, "dermatology")
    assert (info.module, info.version, info.error) == ("tests.test_plugins.Recorder", "1.0", None)
    assert [p.name for p in host.plugins].count("dermatology") == 1
    assert host.specialty("dermatology") == replacement.specialty
    assert "consilium_dermatology" not in sys.modules  # the installed copy is not imported


def documented_block(defines: str) -> str:
    """The ```python block of docs/plugins.md that defines `defines`."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    [block] = [b for b in blocks if f"def {defines}(" in b]
    return block


CARDIOLOGY = """\
from core.hookspecs import hookimpl
from core.specialty import Specialty

SPECIALTY = Specialty(
    slug="cardiology",
    title="Cardiology second opinion",
    summary="Choose this when you want a cardiologist to look again at a heart diagnosis.",
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]
"""

JAZZCASH = """\
import os

from core.hookspecs import hookimpl
from core.payment_providers import PaymentProvider


class JazzCash(PaymentProvider):
    name, label, method = "jazzcash", "Pay with JazzCash", "JazzCash mobile account"


@hookimpl
def consilium_payment_providers(settings):
    return [JazzCash()] if os.environ.get("JAZZCASH_MERCHANT_ID") else None
"""


def test_documented_test_recipes_work_with_the_plugin_installed(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/plugins.md's unit-test recipes, run as a plugin developer would: with the package
    installed (its entry point found first), from the package's folder, which stays clean."""
    site = tmp_path / "site"
    write_distribution(
        site,
        "consilium-cardiology",
        "0.2",
        {"cardiology": "consilium_cardiology"},
        {"consilium_cardiology/__init__.py": CARDIOLOGY},
    )
    write_distribution(
        site,
        "consilium-jazzcash",
        "0.3",
        {"jazzcash": "consilium_jazzcash"},
        {"consilium_jazzcash/__init__.py": JAZZCASH},
    )
    monkeypatch.syspath_prepend(str(site))
    work = tmp_path / "consilium-cardiology"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        for test, fixtures in (
            ("test_loads_next_to_the_installed_plugins", {}),
            ("test_jazzcash_is_offered", {"monkeypatch": monkeypatch}),
        ):
            namespace: dict[str, Any] = {}
            exec(compile(documented_block(test), str(DOCS), "exec"), namespace)  # noqa: S102
            folder = tmp_path / test
            folder.mkdir()
            namespace[test](tmp_path=folder, **fixtures)
        # What Consilium wrote (the secret key the sandbox provider derives its key from) went
        # under tmp_path.
        assert (tmp_path / "test_jazzcash_is_offered" / "secret_key").is_file()
    finally:
        forget_modules("consilium_cardiology", "consilium_jazzcash")
    assert list(work.iterdir()) == []


# --- acceptance: a third-party package with one good, one async and one raising plugin -------

ACME_GOOD = '''\
"""Cardiology: only the hooks it needs."""

from pathlib import Path

from core.hookspecs import hookimpl
from core.specialty import Assets, DateField, Form, Specialty, Text

SPECIALTY = Specialty(
    slug="cardiology",
    title="Cardiology second opinion",
    summary="Choose this when you want a cardiologist to look again at a heart diagnosis.",
    intake=Form(
        version=1,
        fields=(
            Text(name="diagnosis", label="What diagnosis were you given?", required=True),
            DateField(
                name="echo_date",
                label="When was your last echocardiogram?",
                required=True,
                not_before_birth=True,
            ),
        ),
    ),
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_assets() -> Assets:
    return Assets(name="cardiology", templates=Path(__file__).resolve().parent / "templates")
'''

ACME_ASYNC = """\
from core.hookspecs import hookimpl
from core.specialty import Specialty


@hookimpl
async def consilium_specialties() -> list[Specialty]:
    return [Specialty(slug="nephrology", title="Nephrology second opinion", summary="Never.")]
"""

ACME_RAISING = """\
from core.hookspecs import hookimpl
from core.specialty import Specialty


@hookimpl
def consilium_specialties() -> list[Specialty]:
    raise ValueError("no record for Jane Doe, born 1990-05-01")
"""


async def test_a_third_party_package_with_broken_plugins_never_takes_a_page_down(
    settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="consilium.plugins")
    site = tmp_path / "site-packages"
    write_distribution(
        site,
        "acme-clinic-pack",
        "2.0",
        {"cardiology": "acme_good", "acme-async": "acme_async", "acme-raising": "acme_raising"},
        {
            "acme_good/__init__.py": ACME_GOOD,
            "acme_good/templates/cardiology/intake_intro.html": "<p>Have your echo report.</p>",
            "acme_async/__init__.py": ACME_ASYNC,
            "acme_raising/__init__.py": ACME_RAISING,
        },
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        app = create_app(settings)
        await _serve_every_page(app)
    finally:
        forget_modules("acme_good", "acme_async", "acme_raising")
    assert "plugin acme-async not loaded: PluginValidationError" in caplog.text
    assert "plugin acme-raising: consilium_specialties raised ValueError" in caplog.text
    assert "Jane Doe" not in caplog.text


async def _serve_every_page(app) -> None:
    async with open_client(app) as visitor:
        home = await visitor.get("/")
        assert home.status_code == 200 and "Cardiology second opinion" in home.text
        assert "Radiology second opinion" in home.text

    async with open_client(app) as patient:
        await sign_in(patient, await make_person("patient", "acme-patient@example.com"))
        kinds = await patient.get("/requests/new")
        assert kinds.status_code == 200 and 'value="cardiology"' in kinds.text
        assert "Nephrology" not in kinds.text
        started = await post_form(patient, "/requests/new", {"specialty": "cardiology"})
        assert started.status_code == 303, started.text
        uid = started.headers["location"].split("/")[2]
        assert (await patient.get(f"/requests/{uid}/subject")).status_code == 200
        subject = {
            "subject_kind": "self",
            "subject_birth_date": "1990-05-01",
            "subject_sex": "female",
        }
        assert (await post_form(patient, f"/requests/{uid}/subject", subject)).status_code == 303
        intake = await patient.get(f"/requests/{uid}/intake")
        assert intake.status_code == 200 and "Have your echo report." in intake.text
        assert 'name="diagnosis"' in intake.text and 'name="echo_date"' in intake.text
        answers = {"diagnosis": "Mitral regurgitation", "echo_date": "1989-01-01"}
        refused = await post_form(patient, f"/requests/{uid}/intake", answers)
        assert refused.status_code == 400
        assert "This date is before the patient was born (1 May 1990)." in refused.text
        steps = [
            ("intake", {**answers, "echo_date": date.today().replace(day=1).isoformat()}),
            ("questions", {"question_1": "Do I need an operation?"}),
            ("doctor", {"preferred_doctor": "none"}),
        ]
        for step, data in steps:
            response = await post_form(patient, f"/requests/{uid}/{step}", data)
            assert response.status_code == 303, (step, response.text[:2000])
        review = await patient.get(f"/requests/{uid}/review")
        assert review.status_code == 200 and "Mitral regurgitation" in review.text
        submitted = await post_form(patient, f"/requests/{uid}/submit")
        assert submitted.status_code == 303
        assert (await patient.get(f"/cases/{uid}")).status_code == 200

    async with open_client(app) as admin:
        await sign_in(admin, await make_person("admin", "acme-admin@example.com"))
        page = await admin.get("/admin/plugins")
        assert page.status_code == 200
        assert page.text.count("Not loaded") == 1
        assert (
            "consilium_specialties is an async def: hooks must be plain def (synchronous)"
            in page.text
        )
        assert re.search(
            r"consilium_specialties raised ValueError at \d+ \w+ \d{4} \d\d:\d\d", page.text
        )
        assert "Jane Doe" not in page.text


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

    # The generated code is clean by its own ruff settings.
    ruff = Path(sys.executable).with_name("ruff")
    for command in (["check"], ["format", "--check"]):
        checked = subprocess.run(
            [str(ruff), *command, "."], cwd=root, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    module = install_generated(root, tmp_path / "site", monkeypatch)
    try:
        host = PluginHost.load(make_settings(tmp_path / "var", None))
        info = plugin_info(host, "heart-valve")
        assert (info.module, info.version, info.error, info.warnings) == (module, "0.1.0", None, [])
        assert sorted(info.hooks) == ["consilium_assets", "consilium_specialties"]  # what it needs
        specialty = host.specialty("heart-valve")
        assert specialty is not None and specialty.title == "Heart valve second opinion"
        assert [f.name for f in specialty.intake.fields] == ["diagnosis", "diagnosis_date"]
        assert [d.key for d in specialty.required_documents] == ["report"]
        environment = Environment(loader=ChoiceLoader(host.template_loaders()), autoescape=True)
        assert (
            "Before you start" in environment.get_template("heart-valve/intake_intro.html").render()
        )

        # The generated package's own tests pass, run from its folder: they write nothing there.
        path = root / "tests" / "test_heart_valve.py"
        spec = importlib.util.spec_from_file_location("generated_test_heart_valve", path)
        assert spec and spec.loader
        generated = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(generated)
        tests = [value for name, value in vars(generated).items() if name.startswith("test_")]
        assert len(tests) == 4
        before = sorted(p.relative_to(root) for p in root.rglob("*") if "__pycache__" not in str(p))
        monkeypatch.chdir(root)
        for number, test in enumerate(tests):
            fixtures = {"tmp_path": tmp_path / f"generated-{number}"}
            fixtures["tmp_path"].mkdir()
            test(**{name: fixtures[name] for name in inspect.signature(test).parameters})
        after = sorted(p.relative_to(root) for p in root.rglob("*") if "__pycache__" not in str(p))
        assert after == before
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


NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def docs_section(heading: str) -> str:
    """The text under the `heading` line of docs/plugins.md, up to the next heading."""
    text = DOCS.read_text()
    start = text.index(heading + "\n") + len(heading) + 1
    end = re.search(r"^#{2,3} ", text[start:], re.M)
    return text[start : start + end.start()] if end else text[start:]


def test_docs_count_and_list_the_hooks() -> None:
    intro = docs_section("## What a specialty is")
    assert f"Consilium has {NUMBERS[len(ALL_HOOKS)]} hooks" in intro
    assert sorted(re.findall(r"^- `(consilium_\w+)`", intro, re.M)) == ALL_HOOKS


def test_docs_allowlist_sentence_names_what_is_always_loaded() -> None:
    operating = docs_section("## Installing, upgrading and operating")
    [allowlist] = [item for item in operating.split("\n- ") if "PLUGINS_ALLOWLIST" in item]
    for name in CORE_ENTRY_POINTS:
        assert f"`{name}`" in allowlist and "always loaded" in allowlist


def test_docs_say_what_the_scaffold_writes(tmp_path) -> None:
    from core.scaffold import write_plugin

    root = write_plugin("heart-valve", tmp_path)
    module = ast.parse((root / "consilium_heart_valve" / "__init__.py").read_text())
    written = sorted(
        node.name
        for node in module.body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "hookimpl" for d in node.decorator_list)
    )
    tests = ast.parse((root / "tests" / "test_heart_valve.py").read_text())
    count = sum(isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in tests.body)
    scaffold = docs_section("## The scaffold: `consilium new-plugin`")
    assert sorted(set(re.findall(r"`(consilium_\w+)`", scaffold)) & set(ALL_HOOKS)) == written
    assert f"only the {NUMBERS[len(written)]} hooks it needs" in scaffold
    assert f"({NUMBERS[count]} tests" in scaffold


# Declarations docs/plugins.md says have no effect yet: nothing in core's pages reads them.
NO_EFFECT = ("for_children",)


def test_docs_say_which_declarations_have_no_effect_yet() -> None:
    section = docs_section("### Declarations that have no effect yet")
    root = Path(__file__).resolve().parents[1]
    declaring = {"specialty.py", "plugins.py", "scaffold.py", "forms.py"}
    sources = [p for p in (root / "core").rglob("*.py") if p.name not in declaring]
    sources += list((root / "templates").rglob("*.html"))
    for name in NO_EFFECT:
        assert f"`{name}`" in section, name
        users = [p for p in sources if re.search(rf"\.{name}\b", p.read_text())]
        # When one of them gets its effect, say so in docs/plugins.md and update this test.
        assert users == [], (name, users)
    table = docs_section("## `Specialty` fields")
    for name in NO_EFFECT:
        [row] = [line for line in table.splitlines() if line.startswith(f"| `{name}` |")]
        assert "*No effect yet" in row, name


class CountedSpecialties:
    """Offers one specialty and counts how often it is asked."""

    def __init__(self, slug: str) -> None:
        self.asked = 0
        self.specialty = Specialty(slug=slug, title=slug.title(), summary="Counted.")

    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        self.asked += 1
        return [self.specialty]


def test_the_specialties_are_asked_once_per_set_of_plugins(tmp_path) -> None:
    counted = CountedSpecialties("counted")
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("counted", counted)])
    asked = counted.asked  # load checks the declarations
    for _ in range(5):
        assert host.specialty("counted") is counted.specialty
        assert "counted" in {s.slug for s in host.specialties()}
    assert counted.asked == asked + 1
    # Another plugin registered: every plugin is asked again, the newcomer's specialty is there.
    later = CountedSpecialties("later")
    host.manager.register(later, name="later")
    assert host.specialty("later") is later.specialty
    assert (counted.asked, later.asked) == (asked + 2, 1)


class Wayward:
    """A specialty with subspecialties whose suggestion hook answers what it did not declare."""

    SPECIALTY = Specialty(
        slug="wayward",
        title="Wayward",
        summary="Suggests what it never declared.",
        subspecialties=(Choice("valvular", "Valves"),),
    )

    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [self.SPECIALTY]

    @hookimpl
    def consilium_suggest_subspecialty(self, values: dict[str, Any]) -> str | None:
        return values.get("answer")


def test_hook_consilium_suggest_subspecialty(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("wayward", Wayward())])
    suggest = host.suggest_subspecialty  # the owning plugin's hook, as core calls it
    radiology, pathology = host.specialty("radiology"), host.specialty("pathology")
    general = host.specialty("general")
    adult, child = 56, 6
    assert suggest(radiology, {"modality": "mri", "body_part": "head"}, adult) == "neuroradiology"
    assert suggest(radiology, {"modality": "mammogram", "body_part": "breast"}, adult) == "breast"
    assert suggest(radiology, {"modality": "xray", "body_part": "leg"}, child) == "paediatric"
    assert suggest(radiology, {"modality": "other", "body_part": "other"}, adult) is None
    assert suggest(pathology, {"report_kind": "blood_work"}, adult) == "haematopathology"
    biopsy = {"report_kind": "biopsy", "specimen_type": "skin"}
    assert suggest(pathology, biopsy, adult) == "dermatopathology"
    assert suggest(pathology, biopsy, None) == "dermatopathology"  # age unknown: by the sample
    assert suggest(radiology, {"body_part": "chest"}, 15) == "paediatric"
    assert suggest(radiology, {"body_part": "chest"}, 16) == "thoracic"
    assert suggest(pathology, {"report_kind": "cytology"}, child) == "paediatric"
    assert suggest(general, {"anything": "x"}, adult) is None  # no subspecialties, no hook
    # Every built-in suggestion is one the specialty declared.
    for specialty in (radiology, pathology):
        declared = {choice.value for choice in specialty.subspecialties}
        assert declared and all(specialty.subspecialty_label(value) for value in declared)
    # A value the specialty did not declare is a failure: reported, and no preference.
    wayward = host.specialty("wayward")
    assert suggest(wayward, {"answer": "valvular"}, adult) == "valvular"
    assert suggest(wayward, {"answer": "cardiology"}, adult) is None
    failures = plugin_info(host, "wayward").failures
    assert [(f.hook, f.problem) for f in failures] == [
        ("consilium_suggest_subspecialty", "returned str, not one of ['valvular'], or None")
    ]


def test_subspecialties_must_be_unique_slugs() -> None:
    for bad in ((Choice("neuro", "A"), Choice("neuro", "B")), (Choice("Neuro Radiology", "A"),)):
        with pytest.raises(ValueError, match="subspecialty values"):
            Specialty(slug="bad", title="Bad", summary="Bad.", subspecialties=bad)


class Careless:
    """A specialty whose review check returns what is not {field: message}."""

    SPECIALTY = Specialty(slug="careless", title="Careless", summary="Checks carelessly.")

    @hookimpl
    def consilium_specialties(self) -> list[Specialty]:
        return [self.SPECIALTY]

    @hookimpl
    def consilium_validate_review(self, values: dict[str, Any]) -> dict[str, str] | None:
        return {"impression": 42}  # type: ignore[dict-item]


def test_hook_consilium_validate_review(tmp_path) -> None:
    host = PluginHost.load(make_settings(tmp_path, None), extra=[("careless", Careless())])
    check = host.validate_review  # the owning plugin's hook, as core calls it on signing
    radiology, surgical = host.specialty("radiology"), host.specialty("surgical")
    biopsy_needed = {"birads": "4B", "recommendation": "Short-interval follow-up in 6 months."}
    assert set(check(radiology, biopsy_needed)) == {"recommendation"}
    assert "BI-RADS 4B" in check(radiology, biopsy_needed)["recommendation"]
    sampled = {"birads": "4B", "recommendation": "Ultrasound-guided core needle biopsy."}
    assert check(radiology, sampled) == {}
    assert check(radiology, {"birads": "3", "recommendation": "Follow-up in 6 months."}) == {}
    different = {"concordance": "different_operation", "surgery_indicated": "no"}
    assert set(check(surgical, different)) == {"surgery_indicated"}
    assert check(surgical, {**different, "surgery_indicated": "yes"}) == {}
    assert check(host.specialty("general"), {"anything": "x"}) == {}  # no such hook
    # A malformed answer is a failure: reported, and no problems from it.
    assert check(host.specialty("careless"), {}) == {}
    failures = plugin_info(host, "careless").failures
    assert [f.hook for f in failures] == ["consilium_validate_review"]

"""`consilium new-plugin NAME`: write a ready-to-install specialty plugin package.

The package is a working starting point: a specialty with a two-field intake form and one
required document, only the two hooks it needs (`consilium_specialties`, `consilium_assets`),
an intake introduction template and its tests. See docs/plugins.md for what to change next.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

import click

from core.specialty import SLUG_RE

# A specialty slug that is also a clean distribution name: no leading, trailing or double hyphen.
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "consilium-$slug"
version = "0.1.0"
description = "$title for Consilium"
requires-python = ">=3.11"
# Install into the environment that runs Consilium: it provides `core`, so it is not listed here.
dependencies = []

[project.optional-dependencies]
test = ["pytest"]

# How Consilium finds the plugin. After changing this table, run `pip install -e .` again.
[project.entry-points.consilium]
$slug = "$module"

[tool.setuptools.packages.find]
include = ["$module*"]

[tool.setuptools.package-data]
$module = ["templates/**/*.html", "static/**/*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]

[tool.ruff]
line-length = 100

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP"]

[tool.ruff.lint.isort]
known-first-party = ["$module"]
""")

MODULE = Template('''\
"""Consilium specialty plugin: $title."""

from __future__ import annotations

from pathlib import Path

from core.hookspecs import hookimpl
from core.specialty import (
    Assets,
    DateField,
    DocumentKind,
    Form,
    LongText,
    RequiredDocument,
    Specialty,
)

SLUG = "$slug"
HERE = Path(__file__).resolve().parent

SPECIALTY = Specialty(
    slug=SLUG,
    title="$title",
    # Rewrite: one plain-language sentence for patients choosing the kind of second opinion.
    summary="Choose this when you want a specialist to look again at your diagnosis.",
    intake=Form(
        version=1,  # bump when a field changes meaning; stored answers keep their version
        fields=(
            LongText(
                name="diagnosis",
                label="What diagnosis were you given?",
                help="Copy it from the doctor's letter or report, word for word.",
                required=True,
                max_length=3000,
            ),
            DateField(
                name="diagnosis_date",
                label="When were you given this diagnosis?",
                help="If you don't know the exact day, choose the 1st of the month.",
                required=True,
                not_before_birth=True,  # core refuses a date before the patient was born
            ),
        ),
    ),
    required_documents=(
        RequiredDocument(
            key="report",
            label="The report or letter with the diagnosis",
            help="A PDF, or a clear photo of each page.",
            kinds=(DocumentKind.PDF, DocumentKind.IMAGE),
        ),
    ),
)


@hookimpl
def consilium_specialties() -> list[Specialty]:
    return [SPECIALTY]


@hookimpl
def consilium_assets() -> Assets:
    # Templates live in templates/<slug>/; <slug>/intake_intro.html is shown above the intake
    # form. For files served under /static/plugins/<slug>/, add a static/ folder and pass
    # static=HERE / "static".
    return Assets(name=SLUG, templates=HERE / "templates")


# Add other hooks only when you need them (docs/plugins.md, "Hooks"): consilium_validate_intake
# for rules that span several answers, consilium_inspect_document to read uploaded files,
# consilium_describe_records to tell staff about them. Core calls them for your specialty only.
''')

INTAKE_INTRO = Template("""\
<div class="notice notice-info">
  <p class="notice-title">Before you start</p>
  <p>This form takes about 5 minutes. It helps to have these next to you:</p>
  <ul>
    <li>The doctor's letter or report that gives the diagnosis.</li>
  </ul>
</div>
""")

TEST = Template('''\
"""Tests of the $slug specialty plugin.

Run `pytest` in this folder, in the environment where Consilium is installed.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from core.forms import MappingFormData
from core.plugins import PluginHost
from core.settings import Settings

import $module as plugin

BORN = date(1990, 5, 1)
GOOD = {"diagnosis": "What the letter says", "diagnosis_date": "2024-03-01"}


def test_intake_form_accepts_good_answers() -> None:
    values, errors = plugin.SPECIALTY.intake.validate(MappingFormData(GOOD))
    assert errors == {}
    assert values == GOOD
    assert plugin.SPECIALTY.intake.check_subject(values, BORN) == {}


def test_intake_form_explains_problems() -> None:
    bad = {"diagnosis": "", "diagnosis_date": "next week"}
    _, errors = plugin.SPECIALTY.intake.validate(MappingFormData(bad))
    assert set(errors) == {"diagnosis", "diagnosis_date"}  # each with a message for the patient

    # Core's check of not_before_birth=True, once it knows the patient's date of birth.
    early = {**GOOD, "diagnosis_date": "1980-01-01"}
    values, errors = plugin.SPECIALTY.intake.validate(MappingFormData(early))
    assert errors == {}
    assert set(plugin.SPECIALTY.intake.check_subject(values, BORN)) == {"diagnosis_date"}
    assert plugin.SPECIALTY.intake.check_subject(values, None) == {}


def test_hooks() -> None:
    assert plugin.consilium_specialties() == [plugin.SPECIALTY]
    assets = plugin.consilium_assets()
    assert assets.name == "$slug"
    assert (assets.templates / "$slug" / "intake_intro.html").is_file()


def test_loads_next_to_the_installed_plugins(tmp_path: Path) -> None:
    # No .env file; whatever Consilium writes (a secret key, …) goes under tmp_path.
    settings = Settings(_env_file=None, var_dir=tmp_path)
    host = PluginHost.load(settings, extra=[("$slug", plugin)])  # replaces the installed copy
    info = host.plugin("$slug")
    assert info is not None and info.error is None and info.warnings == []
    assert host.specialty("$slug") == plugin.SPECIALTY
    assert host.validate_intake(plugin.SPECIALTY, GOOD, BORN) == {}
    assert info.failures == []  # no hook of the plugin raised
''')


def check_name(name: str) -> str | None:
    """Why `name` cannot be a plugin name, or None when it can."""
    if not (SLUG_RE.match(name) and NAME_RE.match(name)):
        return (
            f"{name!r} is not a valid specialty name: use 2–32 lower case letters, digits and "
            "single hyphens, starting with a letter and not ending with a hyphen "
            "(for example: cardiology, paediatric-oncology)."
        )
    return None


def write_plugin(name: str, directory: Path) -> Path:
    """Write the package `consilium-<name>/` into `directory` and return its path."""
    problem = check_name(name)
    if problem:
        raise ValueError(problem)
    module = "consilium_" + name.replace("-", "_")
    root = directory / f"consilium-{name}"
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another name or folder.")
    words = name.replace("-", " ")
    values = {
        "slug": name,
        "module": module,
        "words": words,
        "title": f"{words.capitalize()} second opinion",
    }
    files = {
        Path("pyproject.toml"): PYPROJECT,
        Path(module) / "__init__.py": MODULE,
        Path(module) / "templates" / name / "intake_intro.html": INTAKE_INTRO,
        Path("tests") / f"test_{module.removeprefix('consilium_')}.py": TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values), encoding="utf-8")
    return root


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder to create the package in.",
)
def new_plugin(name: str, directory: Path) -> None:
    """Create consilium-NAME/, a specialty plugin package ready for `pip install -e`."""
    try:
        root = write_plugin(name, directory)
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {root}")
    click.echo("Next:")
    click.echo(f"  cd {root}")
    click.echo("  pip install -e .        # into the environment that runs Consilium")
    click.echo("  pytest                  # the plugin's own tests")
    click.echo("  then restart Consilium and check /admin/plugins. Guide: docs/plugins.md")

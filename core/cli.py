"""The `consilium` command: serve, migrate, create staff, seed the demo, check configuration."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from core import commands
from core.settings import Settings

T = TypeVar("T")


def _run(settings: Settings, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` with the app's context: its plugins, and the domains' subscriptions."""
    from core.app import build_context

    return commands.run(settings, work, app_context=build_context(settings))


@click.group()
def main() -> None:
    """Consilium: a self-hosted medical second-opinion service."""


def env_name(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    return alias.choices[0] if alias is not None else f"CONSILIUM_{name.upper()}"  # type: ignore[union-attr]


def settings_table() -> str:
    """Every setting as a Markdown table (the README's configuration section)."""
    rows = ["| Environment variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()  # type: ignore[call-arg]
        shown = "" if default in (None, [], "") else f"`{default}`"
        rows.append(f"| `{env_name(name)}` | {shown} | {field.description} |")
    return "\n".join(rows)


@main.command("check-config")
@click.option("--markdown", is_flag=True, help="Print every setting as a Markdown table.")
def check_config(markdown: bool) -> None:
    """Validate the configuration and print a summary (secrets are never printed)."""
    if markdown:
        click.echo(settings_table())
        return
    settings = commands.settings_or_exit()
    database = "PostgreSQL" if settings.uses_postgres else f"SQLite at {settings.sqlite_path}"
    click.echo(f"environment: {settings.env}")
    click.echo(f"base URL:    {settings.base_url}")
    click.echo(f"database:    {database}")
    click.echo(
        f"sessions:    {'Redis' if settings.redis_url else f'files in {settings.var_dir}/sessions'}"
    )
    click.echo(f"email:       {settings.smtp_host or f'files in {settings.var_dir}/mail'}")
    click.echo(f"cookies:     {'Secure' if settings.secure_cookies else 'not Secure (plain HTTP)'}")
    from core.reports.signing import SigningKeyError, load_material

    try:  # in development this makes the self-signed pair, as the first start would
        signer = load_material(settings).common_name
    except SigningKeyError as problem:
        click.echo(f"report signing: {problem}", err=True)
        raise SystemExit(1) from None
    click.echo(f"reports:     signed by {signer!r}")
    click.echo("configuration OK")


@main.command()
def migrate() -> None:
    """Apply every database migration that has not run yet."""
    from core import db

    settings = commands.settings_or_exit()
    _run(settings, db.run_migrations)
    click.echo("database is up to date")


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: CONSILIUM_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: CONSILIUM_PORT).")
@click.option("--migrate/--no-migrate", "run_migrations", default=True, help="Migrate first.")
def serve(host: str | None, port: int | None, run_migrations: bool) -> None:
    """Serve the app with uvicorn."""
    import uvicorn

    from core import db

    settings = commands.settings_or_exit()
    if run_migrations:
        _run(settings, db.run_migrations)
    click.echo(f"Consilium is running on http://{host or settings.host}:{port or settings.port}")
    uvicorn.run(
        "core.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        access_log=False,  # the audit log records what matters; access logs would hold PHI URLs
        proxy_headers=True,
        log_level="warning",
    )


@main.command("create-staff")
@click.option("--email", required=True)
@click.option("--name", "full_name", required=True)
@click.option("--role", type=click.Choice(["doctor", "coordinator", "admin"]), required=True)
@click.option("--specialty", "specialties", multiple=True, help="A doctor's specialty slug.")
@click.password_option(help="Password (prompted if not given).")
def create_staff(
    email: str, full_name: str, role: str, specialties: tuple[str, ...], password: str
) -> None:
    """Create a staff account (staff never register themselves)."""
    from core.accounts import service as accounts
    from core.plugins import PluginHost

    settings = commands.settings_or_exit()
    known = {s.slug for s in PluginHost.load(settings).specialties()}
    try:
        _run(
            settings,
            lambda: accounts.create_staff(
                email=email,
                full_name=full_name,
                role=role,
                specialties=list(specialties),
                known_specialties=known,
                by=None,
                password=password,
            ),
        )
    except accounts.InvalidInput as failed:
        raise click.ClickException("; ".join(failed.errors.values())) from None
    click.echo(f"created {role} {email}; two-factor set-up is asked at first sign-in")


DEMO_DOMAIN = "demo.consilium.example"


async def _seed_demo(settings: Settings) -> list[tuple[str, str, str]]:
    from core.accounts import service as accounts
    from core.plugins import PluginHost

    specialties = PluginHost.load(settings).specialties()
    people: list[dict[str, Any]] = [
        {"email": f"admin@{DEMO_DOMAIN}", "full_name": "Ayesha Admin", "role": "admin"},
        {
            "email": f"coordinator@{DEMO_DOMAIN}",
            "full_name": "Kamran Coordinator",
            "role": "coordinator",
        },
    ]
    for specialty in specialties:
        people.append(
            {
                "email": f"{specialty.slug}@{DEMO_DOMAIN}",
                "full_name": f"Dr. Demo {specialty.slug.capitalize()}",
                "role": "doctor",
                "specialties": [specialty.slug],
                "bio": f"Consultant, {specialty.title.lower()}. Demo account.",
            }
        )
    created = []
    for person in people:
        if await accounts.get_user_by_email(person["email"]) is not None:
            continue
        password = secrets.token_urlsafe(12)
        await accounts.create_staff(
            email=person["email"],
            full_name=person["full_name"],
            role=person["role"],
            specialties=person.get("specialties", []),
            known_specialties={s.slug for s in specialties},
            bio=person.get("bio", ""),
            by=None,
            password=password,
        )
        created.append((person["role"], person["email"], password))
    return created


@main.command("seed-demo")
def seed_demo() -> None:
    """Create demo staff (admin, coordinator, one doctor per specialty); prints passwords once."""
    settings = commands.settings_or_exit()
    created = _run(settings, lambda: _seed_demo(settings))
    if not created:
        click.echo("demo accounts already exist (their passwords were printed when created)")
        return
    click.echo("Demo staff accounts (shown once; set up two-factor sign-in at first sign-in):")
    for role, email, password in created:
        click.echo(f"  {role:<12} {email:<40} {password}")


def _attach_subcommands() -> None:
    from core.audit.cli import audit
    from core.documents.cli import documents_group, keys
    from core.scaffold import new_plugin

    main.add_command(audit)
    main.add_command(keys)
    main.add_command(documents_group, name="documents")
    main.add_command(new_plugin, name="new-plugin")


_attach_subcommands()

if __name__ == "__main__":
    sys.exit(main())

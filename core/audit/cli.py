"""`consilium audit …`: checks on the audit log that an operator runs from a shell or cron."""

from __future__ import annotations

import asyncio

import click

from core import db
from core.audit import service
from core.settings import ConfigurationError, load_settings


@click.group("audit")
def audit() -> None:
    """Inspect the tamper-evident audit log."""


@audit.command("verify")
def verify() -> None:
    """Walk the whole hash chain; exit 1 when a row was altered, deleted or reordered."""
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    db.configure_database(settings)
    report = asyncio.run(service.verify_chain())
    if report.intact:
        click.echo(f"audit log intact: {report.rows} rows")
        return
    for problem in report.problems:
        click.echo(problem)
    click.echo(f"audit log damaged: {len(report.problems)} problem(s) in {report.rows} rows")
    raise SystemExit(1)

"""`consilium audit …`: checks on the audit log that an operator runs from a shell or cron."""

from __future__ import annotations

import click

from core import commands
from core.audit import service


@click.group("audit")
def audit() -> None:
    """Inspect the tamper-evident audit log."""


@audit.command("verify")
def verify() -> None:
    """Walk the whole hash chain; exit 1 when a row was altered, deleted or reordered."""
    report = commands.run(commands.settings_or_exit(), service.verify_chain)
    if report.intact:
        click.echo(f"audit log intact: {report.rows} rows")
        return
    for problem in report.problems:
        click.echo(problem)
    click.echo(f"audit log damaged: {len(report.problems)} problem(s) in {report.rows} rows")
    raise SystemExit(1)

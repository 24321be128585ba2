"""`consilium keys …` and `consilium documents …`: record maintenance from a shell or cron.

Run them as the user the app runs as: a rotated keyring file is rewritten (0600) by whoever
runs the command, and the app must still be able to read it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from core import commands, context
from core.documents import maintenance
from core.documents.keyring import ENV_VAR, KeyringError
from core.documents.service import Records
from core.settings import Settings

T = TypeVar("T")

RESTART_NOTE = (
    "Running app processes that share this keyring file pick up the new key by themselves. "
    "Run `consilium keys rewrap` later to move any upload wrapped while the rotation ran."
)


def _with_records(settings: Settings, work: Callable[[Records], Awaitable[T]]) -> T:
    """Run `work(records)` with the database bound and pooled, and the store closed after."""
    current = context.standalone(settings, open_records=lambda: Records.open(settings))
    return commands.run(settings, lambda: work(current.records), app_context=current)


def _require_keys(settings: Settings) -> None:
    """These commands use existing keys and never create a keyring: a missing one means the
    wrong CONSILIUM_VAR_DIR (a new keyring there would open nothing)."""
    path = settings.var_dir / "keyring.json"
    if not settings.master_keys and not path.exists():
        raise click.ClickException(
            f"no keyring at {path} and {ENV_VAR} is not set: is CONSILIUM_VAR_DIR the app's?"
        )


def _check_keyring_owner(settings: Settings) -> None:
    """Refuse to rewrite a keyring file owned by someone else: the copy written would be
    0600 and ours, and the app (running as its owner) could no longer read its keys."""
    path = settings.var_dir / "keyring.json"
    if not path.exists() or not hasattr(os, "geteuid"):
        return
    owner = path.stat().st_uid
    if owner != os.geteuid():
        raise click.ClickException(
            f"{path} belongs to user id {owner}, and this command runs as user id "
            f"{os.geteuid()}. Run it as the user the app runs as (e.g. `sudo -u <user> "
            f"consilium keys rotate`), or the app could no longer read its keys."
        )


# consilium keys ---------------------------------------------------------------------------------


@click.group("keys")
def keys() -> None:
    """Master keys that wrap each record's data key."""


def _print_rotation(report: maintenance.RotationReport) -> None:
    for problem in report.failed:
        click.echo(f"FAILED  {problem}")
    if report.remaining:
        click.echo(
            f"{report.remaining} data key(s) are still under an older master key"
            + (" (listed above)" if report.failed else "")
            + ": run `consilium keys rewrap` to move them."
        )


@keys.command("rotate")
def rotate() -> None:
    """Add a new master key, make it current and re-wrap every data key under it.

    Only the ~60-byte wrapped keys in the database change; stored files are not touched.
    Older master keys stay in the keyring. If interrupted, `consilium keys rewrap` finishes
    the job.
    """
    settings = commands.settings_or_exit()
    if settings.master_keys:
        raise click.ClickException(
            f"the master keys come from {ENV_VAR}, which this command cannot change. Rotate "
            f"them in your secret store: add a new key, make it the current one, restart the "
            f"app, then run `consilium keys rewrap` to re-wrap every data key under it."
        )
    _require_keys(settings)
    _check_keyring_owner(settings)
    try:
        report = _with_records(settings, maintenance.rotate_master_key)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"new master key: {report.key_id} (now current; older keys are kept)")
    click.echo(
        f"re-wrapped {report.rewrapped} data key(s); "
        f"{report.already_current} already under the new key; no file was rewritten"
    )
    _print_rotation(report)
    click.echo(RESTART_NOTE)
    if report.failed:
        raise SystemExit(1)


@keys.command("rewrap")
def rewrap() -> None:
    """Re-wrap data keys still under an older master key with the current one.

    Finishes an interrupted rotation, moves uploads a running app wrapped under the old key,
    or follows a rotation made in the secret store (keys from the environment).
    """
    settings = commands.settings_or_exit()
    _require_keys(settings)
    try:
        report = _with_records(settings, maintenance.rewrap_data_keys)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"current master key: {report.key_id}; re-wrapped {report.rewrapped} data key(s), "
        f"{report.already_current} already under it"
    )
    _print_rotation(report)
    if report.failed:
        raise SystemExit(1)


# consilium documents ----------------------------------------------------------------------------


@click.group("documents")
def documents_group() -> None:
    """Stored records: integrity checks."""


def _size(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


@documents_group.command("scrub")
def scrub() -> None:
    """Re-verify every stored record (each segment's tag and the SHA-256 of the whole file),
    list stored objects no record refers to and records whose object is missing, and remove
    leftovers of writes interrupted more than a day ago. Exit code 1 on damage or a missing
    object."""
    settings = commands.settings_or_exit()
    _require_keys(settings)
    try:
        report = _with_records(settings, maintenance.scrub)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in report.damaged:
        click.echo(f"DAMAGED {problem}")
    for problem in report.missing:
        click.echo(f"MISSING {problem}")
    for key in report.orphans:
        click.echo(f"ORPHAN  object {key}: no record refers to it")
    click.echo(
        f"checked {report.checked} document(s), {_size(report.verified_bytes)} verified: "
        f"{len(report.damaged)} damaged, {len(report.missing)} missing, "
        f"{len(report.orphans)} orphaned object(s), "
        f"{report.purged_incomplete} interrupted write(s) cleared"
    )
    if not report.ok:
        raise SystemExit(1)

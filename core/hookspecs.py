"""The plugin contract: every hook a plugin may implement. A plugin implements only those it
needs.

Hooks are synchronous (`def`, never `async def`: such a plugin is not loaded) and called with
keyword arguments, each plugin's on its own: one that raises is logged and left out of the page.
The hooks that take a `specialty` are called only for the plugin whose `consilium_specialties`
returned it. Each is documented, with its exact signature, in docs/plugins.md and tested by a
`test_hook_<name>` test.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, BinaryIO

import pluggy

from core.payment_providers import PaymentProvider
from core.settings import Settings
from core.specialty import Assets, DocumentFacts, RecordsDetail, Specialty

PROJECT = "consilium"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def consilium_specialties() -> list[Specialty]:
    """Return the specialties this plugin provides (usually one)."""
    raise NotImplementedError


@hookspec
def consilium_validate_intake(
    specialty: Specialty, values: dict[str, Any], subject_birth_date: date | None
) -> dict[str, str] | None:
    """Check rules that span several intake fields (or the patient's age) after every field
    passed its own checks and core's date-of-birth checks (`not_before_birth`). Return
    {field name: message} for problems, or None. Called only for this plugin's specialties."""
    raise NotImplementedError


@hookspec
def consilium_validate_review(
    specialty: Specialty, values: dict[str, Any]
) -> dict[str, str] | None:
    """Check rules that span several fields of the doctor's review before it may be signed,
    after every field passed its own checks. `values`: the review form's values (as the
    specialty's `review` form cleans them) and, under "concordance", the value chosen on the
    specialty's concordance scale (absent until chosen). Return {field name: message} for
    problems (the message is for the doctor: precise clinical language), or None. Called only
    for this plugin's specialties; no I/O."""
    raise NotImplementedError


@hookspec
def consilium_assets() -> Assets | None:
    """Return the template and static folders this plugin contributes, or None."""
    raise NotImplementedError


@hookspec
def consilium_inspect_document(
    specialty: Specialty, kind: str, open_file: Callable[[], BinaryIO]
) -> DocumentFacts | None:
    """Read one uploaded document of a case of `specialty`, after its content was sniffed.
    `kind` is a `DocumentKind` value; each file inside a ZIP is inspected on its own.
    `open_file()` returns a new binary, seekable file object with the (decrypted) content: close
    what you open. Return what you found (facts, flags, the checklist item it satisfies) or None.
    Called only for this plugin's specialties, for every document of their cases. Blocking: core
    calls it in a worker thread."""
    raise NotImplementedError


@hookspec
def consilium_describe_records(
    specialty: Specialty, facts: list[dict[str, str]]
) -> RecordsDetail | None:
    """Describe one line of a case's record list to staff (coordinators, admins, the doctor):
    `facts` holds what `consilium_inspect_document` returned for each file of the line (one file,
    or every file of one `group`). Return None when there is nothing to say. Patients never see
    it. Called only for this plugin's specialties, while a page is built: no I/O."""
    raise NotImplementedError


@hookspec
def consilium_suggest_subspecialty(
    specialty: Specialty, values: dict[str, Any], subject_age: int | None
) -> str | None:
    """Name the subspecialty a case needs, from its intake answers (`values`, as stored) and the
    subject's age in whole years when the case is received (None if unknown): one of
    `specialty.subspecialties`' values, or None when any doctor of the specialty will do. Core
    offers the case to a doctor with that subspecialty first. Called once, when the case is
    received; only for this plugin's specialties; no I/O."""
    raise NotImplementedError


@hookspec
def consilium_payment_providers(settings: Settings) -> list[PaymentProvider] | None:
    """Return the payment providers this plugin offers (instances of `PaymentProvider`),
    configured from `settings`; return None or [] when not configured. Which of all offered
    providers patients see, and in which order, is the `payment_providers` setting."""
    raise NotImplementedError

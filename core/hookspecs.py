"""The plugin contract: every hook a specialty plugin may implement.

Hooks are synchronous and called with keyword arguments; each is documented, with its exact
signature, in docs/plugins.md and tested by a `test_hook_<name>` test.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, BinaryIO

import pluggy

from core.payments.providers import PaymentProvider
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
    passed its own checks. Return {field name: message} for problems, or None. Called for every
    specialty: return None for one that is not yours."""
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
    Called for every specialty and every document: return None at once for what is not yours.
    Blocking: core calls it in a worker thread."""
    raise NotImplementedError


@hookspec
def consilium_describe_records(
    specialty: Specialty, facts: list[dict[str, str]]
) -> RecordsDetail | None:
    """Describe one line of a case's record list to staff (coordinators, admins, the doctor):
    `facts` holds what `consilium_inspect_document` returned for each file of the line (one file,
    or every file of one `group`). Return None for what is not yours. Patients never see it.
    Called while a page is built: no I/O."""
    raise NotImplementedError


@hookspec
def consilium_payment_providers(settings: Settings) -> list[PaymentProvider] | None:
    """Return the payment providers this plugin offers (instances of `PaymentProvider`),
    configured from `settings`; return None or [] when not configured. Which of all offered
    providers patients see, and in which order, is the `payment_providers` setting."""
    raise NotImplementedError

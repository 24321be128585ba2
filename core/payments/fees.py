"""The fee schedule (an admin's rules by country and specialty) and the fee fixed on a case
at submission."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core import clock, db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases.tables import Case
from core.errors import InvalidInput
from core.ids import parse_uuid
from core.payments.ledger import PaymentRefused
from core.payments.money import money, parse_amount
from core.payments.tables import (
    CaseFee,
    FeeRule,
)
from core.roles import ADMIN


@dataclass(frozen=True)
class Quote:
    label: str
    currency: str
    amount_minor: int

    @property
    def display(self) -> str:
        return money(self.amount_minor, self.currency)


async def fee_rules(*, active_only: bool = False) -> list[FeeRule]:
    query = FeeRule.objects().order_by(FeeRule.country).order_by(FeeRule.specialty)
    if active_only:
        query = query.where(FeeRule.active.eq(True))
    return await query


def _specificity(rule: FeeRule) -> int:
    return (2 if rule.country else 0) + (1 if rule.specialty else 0)


async def quote(country: str, specialty: str) -> Quote:
    """The fee for a resident of `country` asking for `specialty`: the most specific rule."""
    matching = [
        rule
        for rule in await fee_rules(active_only=True)
        if rule.country in ("", country.upper()) and rule.specialty in ("", specialty)
    ]
    if not matching:
        raise PaymentRefused("No fee is set for this case. Please contact us.")
    best = max(matching, key=_specificity)
    return Quote(best.label, best.currency, best.amount_minor)


async def quote_or_none(country: str, specialty: str) -> Quote | None:
    """The fee a request would be asked for now (the wizard's review step), or None."""
    try:
        return await quote(country, specialty)
    except PaymentRefused:
        return None


def check_rule(values: Mapping[str, str], known_specialties: set[str]) -> tuple[dict, dict]:
    """Clean an admin's rule form: (values for the table, field errors)."""
    import pycountry

    errors: dict[str, str] = {}
    label = values.get("label", "").strip()
    if not label or len(label) > 100:
        errors["label"] = "Enter a short description, such as “Residents of Pakistan”."
    country = values.get("country", "").strip().upper()
    if country and pycountry.countries.get(alpha_2=country) is None:
        errors["country"] = "Enter a two-letter country code such as PK, or leave it empty."
    specialty = values.get("specialty", "").strip()
    if specialty and specialty not in known_specialties:
        errors["specialty"] = "Choose a specialty from the list, or any."
    currency = values.get("currency", "").strip().upper()
    if pycountry.currencies.get(alpha_3=currency) is None:
        errors["currency"] = "Enter a three-letter currency code such as PKR or USD."
    amount_minor = parse_amount(values.get("amount", ""), currency)
    if amount_minor is None:
        errors["amount"] = "Enter the amount as a number, such as 4500 or 65.00."
    clean = {
        "label": label,
        "country": country,
        "specialty": specialty,
        "currency": currency,
        "amount_minor": amount_minor,
        "active": values.get("active", "on") in ("on", "yes", "true", "1"),
    }
    return clean, errors


async def save_rule(
    values: Mapping[str, str],
    *,
    known_specialties: set[str],
    by: User,
    ip: str | None,
    rule_uid: str | None = None,
) -> FeeRule:
    """Add a rule (or change one); only admins; audited with before and after."""
    if by.role != ADMIN:
        raise PaymentRefused("Only admins change fees.")
    clean, errors = check_rule(values, known_specialties)
    async with db.transaction():
        existing = await get_rule(rule_uid) if rule_uid else None
        clash = FeeRule.objects().where(
            (FeeRule.country == clean["country"]) & (FeeRule.specialty == clean["specialty"])
        )
        if existing is not None:
            clash = clash.where(FeeRule.id != existing.id)
        if not errors and clean["active"] and await clash.where(FeeRule.active.eq(True)).first():
            errors["country"] = "An active rule for this country and specialty exists already."
        if not errors and existing is not None and not (existing.country or existing.specialty):
            if clean["country"] or clean["specialty"] or not clean["active"]:
                errors["active"] = "Keep one active rule for any country and any specialty."
        if errors:
            raise InvalidInput(errors)
        before = _rule_text(existing) if existing else ""
        if existing is None:
            rule = FeeRule(**clean)
            await FeeRule.insert(rule)
        else:
            rule = existing
            for name, value in clean.items():
                setattr(rule, name, value)
            rule.updated_at = clock.now()
            await rule.save()
        await audit.record(
            "fee.change" if existing else "fee.create",
            actor=by,
            object_type="fee_rule",
            object_id=str(rule.uid),
            ip=ip,
            details={"before": before, "after": _rule_text(rule)},
        )
    return rule


async def get_rule(uid: str) -> FeeRule | None:
    parsed = parse_uuid(uid)
    if parsed is None:
        return None
    return await FeeRule.objects().where(FeeRule.uid == parsed).first()


def _rule_text(rule: FeeRule) -> str:
    where = rule.country or "any country"
    what = rule.specialty or "any specialty"
    state = "" if rule.active else " (inactive)"
    return f"{rule.label}: {money(rule.amount_minor, rule.currency)} for {where}, {what}{state}"


async def fix_fee(case: Case, patient: User) -> CaseFee:
    """Fix the fee on the case (at submission); later calls return what was fixed."""
    existing = await case_fee(case)
    if existing is not None:
        return existing
    offer = await quote(patient.country or "", case.specialty)
    fee = CaseFee(
        case=case.id, label=offer.label, currency=offer.currency, amount_minor=offer.amount_minor
    )
    await CaseFee.insert(fee)
    return fee


async def case_fee(case: Case) -> CaseFee | None:
    return await CaseFee.objects().where(CaseFee.case == case.id).first()

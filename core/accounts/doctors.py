"""What a doctor says about the cases they take: title and registration (for reports), the
subspecialties they cover in each of their specialties, whether they review children, how many
cases they hold at most, and when they are out of office. Routing reads it
(core/assignment/service.py); the doctor edits it on their settings page, an admin on the
doctor's staff form. Either way the same rules apply; the audit log names who did it (`by`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from core import db
from core.accounts.tables import DoctorAway, DoctorProfile, DoctorSpecialty, User
from core.audit import service as audit
from core.errors import InvalidInput, NotFound
from core.ids import parse_uuid
from core.roles import ADMIN, DOCTOR
from core.specialty import Specialty

MAX_ACTIVE_LIMIT = 100
MAX_AWAY_DAYS = 366


def subspecialties_of(raw: Any) -> frozenset[str]:
    """The subspecialty values a `DoctorSpecialty.subspecialties` column holds (JSON)."""
    values = json.loads(raw) if isinstance(raw, str) else raw
    return frozenset(str(value) for value in values or [])


def _check_editor(doctor: User, by: User) -> None:
    """Only doctors have these settings, and only they or an admin change them: anything else
    is not found (the same answer as a doctor who does not exist)."""
    if doctor.role != DOCTOR or not (by.id == doctor.id or by.role == ADMIN):
        raise NotFound


@dataclass(frozen=True)
class SpecialtyCover:
    """One of the doctor's specialties, the subspecialties it declares and those they cover."""

    specialty: Specialty
    covered: frozenset[str]
    lead: bool = False  # the department lead (admins set it)


@dataclass(frozen=True)
class DoctorSettings:
    title: str
    registration_number: str
    registering_body: str
    reviews_children: bool
    max_active_cases: int
    specialties: list[SpecialtyCover]
    away: list[DoctorAway]


async def leads_of(specialty: str) -> list[User]:
    """The active department leads of a specialty (told of its overdue cases)."""
    leads = DoctorSpecialty.select(DoctorSpecialty.doctor).where(
        (DoctorSpecialty.specialty == specialty) & DoctorSpecialty.lead.eq(True)
    )
    return await User.objects().where(User.id.is_in(leads) & User.is_active.eq(True))


async def settings_of(doctor: User, specialty: dict[str, Specialty | None]) -> DoctorSettings:
    """`specialty`: slug → the installed specialty (None when its plugin is gone)."""
    # No row yet: the table's defaults (what routing assumes too).
    found = await DoctorProfile.objects().where(DoctorProfile.doctor == doctor.id).first()
    profile = found or DoctorProfile()
    links = await DoctorSpecialty.objects().where(DoctorSpecialty.doctor == doctor.id)
    covers = []
    for link in links:
        found = specialty.get(link.specialty)
        if found is not None:
            covers.append(
                SpecialtyCover(found, subspecialties_of(link.subspecialties), bool(link.lead))
            )
    away = (
        await DoctorAway.objects()
        .where(DoctorAway.doctor == doctor.id)
        .order_by(DoctorAway.first_day)
    )
    return DoctorSettings(
        title=profile.title,
        registration_number=profile.registration_number,
        registering_body=profile.registering_body,
        reviews_children=profile.reviews_children,
        max_active_cases=profile.max_active_cases,
        specialties=covers,
        away=list(away),
    )


async def save_settings(
    doctor: User,
    values: dict[str, list[str]],
    specialty: dict[str, Specialty | None],
    *,
    by: User,
    ip: str | None,
) -> None:
    """Save the settings form (`values`: field name → every value sent) of `doctor`, changed
    by `by` (the doctor, or an admin). Problems are raised as InvalidInput, nothing saved."""
    _check_editor(doctor, by)
    one = {name: (items[0] if items else "").strip() for name, items in values.items()}
    errors: dict[str, str] = {}
    lengths = {"title": 120, "registration_number": 60, "registering_body": 120}
    for name, longest in lengths.items():
        if len(one.get(name, "")) > longest:
            errors[name] = f"Use at most {longest} characters."
    try:
        most = int(one.get("max_active_cases", ""))
        if not 1 <= most <= MAX_ACTIVE_LIMIT:
            raise ValueError
    except ValueError:
        errors["max_active_cases"] = f"Give a whole number from 1 to {MAX_ACTIVE_LIMIT}."
        most = 0
    children = one.get("reviews_children")
    if children not in ("yes", "no"):
        errors["reviews_children"] = "Say whether you review children's cases."
    if errors:
        raise InvalidInput(errors)
    links = await DoctorSpecialty.objects().where(DoctorSpecialty.doctor == doctor.id)
    async with db.transaction():
        for link in links:
            found = specialty.get(link.specialty)
            if found is None:
                continue  # a specialty whose plugin is gone: keep what was there
            declared = {choice.value for choice in found.subspecialties}
            chosen = [v for v in values.get(f"sub_{link.specialty}", []) if v in declared]
            changes: dict[Any, Any] = {
                DoctorSpecialty.subspecialties: json.dumps(sorted(set(chosen)))
            }
            if by.role == ADMIN:  # only admins name a department's lead
                changes[DoctorSpecialty.lead] = link.specialty in values.get("lead", [])
            await DoctorSpecialty.update(changes).where(DoctorSpecialty.id == link.id)
        fields = {
            DoctorProfile.title: one.get("title", ""),
            DoctorProfile.registration_number: one.get("registration_number", ""),
            DoctorProfile.registering_body: one.get("registering_body", ""),
            DoctorProfile.reviews_children: children == "yes",
            DoctorProfile.max_active_cases: most,
        }
        exists = await DoctorProfile.exists().where(DoctorProfile.doctor == doctor.id)
        if exists:
            await DoctorProfile.update(fields).where(DoctorProfile.doctor == doctor.id)
        else:
            await DoctorProfile.insert(
                DoctorProfile(doctor=doctor.id, **{col._meta.name: v for col, v in fields.items()})
            )
        await audit.record("doctor.settings", actor=by, ip=ip, subject_uid=doctor.uid)


async def add_away(doctor: User, first: str, last: str, *, by: User, ip: str | None) -> DoctorAway:
    """A range of days `doctor` is out of office (both included), added by `by`."""
    _check_editor(doctor, by)
    errors: dict[str, str] = {}
    days = {}
    for name, text in (("first_day", first), ("last_day", last)):
        try:
            days[name] = date.fromisoformat((text or "").strip())
        except ValueError:
            errors[name] = "Give a date, for example 2026-12-14."
    if not errors:
        if days["last_day"] < days["first_day"]:
            errors["last_day"] = "The last day cannot be before the first."
        elif (days["last_day"] - days["first_day"]).days >= MAX_AWAY_DAYS:
            errors["last_day"] = "Give a range of at most a year."
    if errors:
        raise InvalidInput(errors)
    away = DoctorAway(
        uid=uuid.uuid4(), doctor=doctor.id, first_day=days["first_day"], last_day=days["last_day"]
    )
    async with db.transaction():
        await DoctorAway.insert(away)
        await audit.record("doctor.away_added", actor=by, ip=ip, subject_uid=doctor.uid)
    return away


async def remove_away(doctor: User, away_uid: str, *, by: User, ip: str | None) -> None:
    """Remove one of `doctor`'s ranges (another doctor's is not found), by `by`."""
    _check_editor(doctor, by)
    parsed = parse_uuid(away_uid)
    async with db.transaction():
        gone = (
            await DoctorAway.delete()
            .where((DoctorAway.uid == parsed) & (DoctorAway.doctor == doctor.id))
            .returning(DoctorAway.id)
            if parsed is not None
            else []
        )
        if not gone:
            raise NotFound
        await audit.record("doctor.away_removed", actor=by, ip=ip, subject_uid=doctor.uid)

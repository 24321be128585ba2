"""How staff want to hear about cases: each kind of message at once (the default) or only in
their daily digest, and the hour of that digest in their own time zone (core/attention sends
it). Services that email staff ask `at_once` whom to email now."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo, available_timezones

from core import context
from core.accounts.tables import MessageSettings, User
from core.errors import InvalidInput

# Kinds of message staff may keep for the digest, as the settings page names them.
OFFERS = "offers"  # doctors: a case offered to them
NEEDS_A_DOCTOR = "needs_a_doctor"  # coordinators: a case to assign, declined, lapsed, handed back
AT_RISK = "at_risk"
OVERDUE = "overdue"
KINDS = {
    OFFERS: "A case is offered to me",
    NEEDS_A_DOCTOR: "A case needs a doctor (declined, not answered in time, handed back)",
    AT_RISK: "A case is at risk of being late",
    OVERDUE: "A case is overdue",
}


@dataclass(frozen=True)
class Settings:
    digest_hour: int
    time_zone: str  # never empty: the hospital's zone when the person chose none
    digest_only: frozenset[str]


def _of(row: MessageSettings | None) -> Settings:
    hospital = context.settings().time_zone
    if row is None:
        return Settings(8, hospital, frozenset())
    kept = json.loads(row.digest_only) if isinstance(row.digest_only, str) else row.digest_only
    return Settings(row.digest_hour, row.time_zone or hospital, frozenset(kept or []))


async def settings_of(user: User) -> Settings:
    return _of(await MessageSettings.objects().where(MessageSettings.user == user.id).first())


async def at_once(users: Iterable[User], kind: str) -> list[User]:
    """Those of `users` who want messages of `kind` as they happen (not digest only)."""
    people = list(users)
    if not people:
        return []
    rows = await MessageSettings.objects().where(
        MessageSettings.user.is_in([user.id for user in people])
    )
    kept = {row.user: _of(row).digest_only for row in rows}
    return [user for user in people if kind not in kept.get(user.id, frozenset())]


def check(values: dict[str, list[str]]) -> tuple[dict, dict[str, str]]:
    """The settings form: digest hour, time zone, the kinds kept for the digest."""
    errors: dict[str, str] = {}
    one = {name: (items[0] if items else "").strip() for name, items in values.items()}
    try:
        hour = int(one.get("digest_hour", ""))
        if not 0 <= hour <= 23:
            raise ValueError
    except ValueError:
        errors["digest_hour"] = "Choose an hour from 0 to 23."
        hour = 8
    zone = one.get("time_zone", "")
    if zone and zone not in available_timezones():
        errors["time_zone"] = "Choose a time zone from the list, for example Asia/Karachi."
    kept = sorted(set(values.get("digest_only", [])) & set(KINDS))
    return {"digest_hour": hour, "time_zone": zone, "digest_only": kept}, errors


async def save(user: User, values: dict[str, list[str]]) -> None:
    cleaned, errors = check(values)
    if errors:
        raise InvalidInput(errors)
    fields = {
        MessageSettings.digest_hour: cleaned["digest_hour"],
        MessageSettings.time_zone: cleaned["time_zone"],
        MessageSettings.digest_only: json.dumps(cleaned["digest_only"]),
    }
    if await MessageSettings.exists().where(MessageSettings.user == user.id):
        await MessageSettings.update(fields).where(MessageSettings.user == user.id)
    else:
        await MessageSettings.insert(
            MessageSettings(user=user.id, **{col._meta.name: v for col, v in fields.items()})
        )


def zone_of(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.time_zone)

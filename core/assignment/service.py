"""Who reviews a received case: offers, answers, and moving a case between doctors.

When a case is received (cases publishes `CaseReceived`) it is **offered** to one doctor, in
the same transaction: the patient's preferred doctor when that doctor can take it, otherwise
the best match. A doctor can take a case when they are active, have the case's specialty (and
the subspecialty its plugin suggested, where one exists — for the preferred doctor a must, for
the others a preference), review children if the subject is one, are not out of office today,
hold fewer cases than their maximum, and have not declined, let lapse or handed back this case
before. The best match covers the suggested subspecialty if anyone free does, then holds the
fewest cases, then comes first by name.

The doctor **accepts**, declaring no conflict of interest, or **declines** with a reason; an
offer not answered within `offer_response_working_days` lapses (`expire_offers`, run by the
worker). Declined or lapsed, the case is offered to the next match, or waits in the
coordinators' "to assign" queue (received, with nobody) when there is none. A doctor may hand an
accepted case back (it goes to the coordinators); a coordinator may move a case to another doctor
with a reason (offered to them). With `assignment_mode = coordinator` nothing is offered by
itself: coordinators choose, with the best match pre-selected on the triage page.

Each offer is a row of `Offer` (the case's assignment history); at most one per case is open
(offered or accepted), enforced by a unique index. `Case.assigned_doctor` names the doctor the
case is with, offered or accepted: they alone (besides coordinators) may open it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from piccolo.query.functions.aggregate import Count

from core import clock, context, db
from core.accounts import doctors as doctor_settings
from core.accounts.tables import DoctorAway, DoctorProfile, DoctorSpecialty, User
from core.assignment import messages
from core.assignment.tables import Offer
from core.audit import service as audit
from core.cases import service as cases
from core.cases import states
from core.cases.reception import locked_case
from core.cases.tables import Case
from core.cases.turnaround import working_days_later
from core.errors import InvalidInput, Refused
from core.events import Events
from core.facts import CaseReceived
from core.roles import DOCTOR

CHILD_UNDER_YEARS = 18  # a subject younger than this is a child: only doctors who review children
MAX_REASON_CHARS = 2000

OFFERED, ACCEPTED = "offered", "accepted"
DECLINED, EXPIRED, HANDED_BACK, MOVED = "declined", "expired", "handed_back", "moved"
OPEN_OFFERS = (OFFERED, ACCEPTED)
REFUSED = (DECLINED, EXPIRED, HANDED_BACK)  # this doctor is not offered this case again
_STATUS_WORDS = {
    OFFERED: "offered, waiting for an answer",
    ACCEPTED: "accepted",
    DECLINED: "declined",
    EXPIRED: "did not answer in time",
    HANDED_BACK: "handed back",
    MOVED: "moved to another doctor by a coordinator",
}


def offer_status(status: str) -> str:
    """What became of an offer, in words for staff."""
    return _STATUS_WORDS.get(status, status)


class AssignmentRefused(Refused):
    """The offer, answer or move is not possible now; `message` says why, for the person."""


@dataclass(frozen=True)
class Candidate:
    """A doctor of the case's specialty, as routing sees them today."""

    doctor: User
    subspecialties: frozenset[str]
    reviews_children: bool
    max_active: int
    active: int  # cases with them now (offered or accepted, not yet reported)
    away_until: date | None  # the last day of an out-of-office range covering today

    @property
    def name(self) -> str:
        return self.doctor.full_name


@dataclass(frozen=True)
class Routing:
    """Where a case can go: what the triage page shows and what `route` follows."""

    subspecialty: str  # what the case needs ("" for any doctor of the specialty)
    preferred: Candidate | None  # the doctor the patient asked for, if of the specialty
    preferred_problem: str  # why the preferred doctor cannot take it now ("" if they can)
    matches: list[Candidate]  # every doctor who can take it, best first
    others: list[tuple[Candidate, str]]  # those who cannot, and why

    @property
    def choice(self) -> Candidate | None:
        """The doctor the case goes to: the preferred one if they can take it, else the best
        match."""
        if self.preferred is not None and not self.preferred_problem:
            return self.preferred
        return self.matches[0] if self.matches else None


def subject_age(case: Case, on: date) -> int | None:
    birth = case.subject_birth_date
    if birth is None:
        return None
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def today() -> date:
    return clock.local_date(clock.now(), context.settings().time_zone)


# Candidates ------------------------------------------------------------------------------------


async def candidates(specialty: str, on: date) -> list[Candidate]:
    """Every active doctor of `specialty`, with what routing needs to know: five queries,
    however many doctors."""
    links = await DoctorSpecialty.select(
        DoctorSpecialty.doctor, DoctorSpecialty.subspecialties
    ).where(DoctorSpecialty.specialty == specialty)
    covered = {
        row["doctor"]: doctor_settings.subspecialties_of(row["subspecialties"]) for row in links
    }
    if not covered:
        return []
    ids = list(covered)
    doctors = (
        await User.objects()
        .where(User.id.is_in(ids) & (User.role == DOCTOR) & User.is_active.eq(True))
        .order_by(User.full_name)
    )
    profiles = {
        row.doctor: row
        for row in await DoctorProfile.objects().where(DoctorProfile.doctor.is_in(ids))
    }
    away: dict[int, date] = {}
    for row in await DoctorAway.select(DoctorAway.doctor, DoctorAway.last_day).where(
        DoctorAway.doctor.is_in(ids) & (DoctorAway.first_day <= on) & (DoctorAway.last_day >= on)
    ):
        away[row["doctor"]] = max(row["last_day"], away.get(row["doctor"], row["last_day"]))
    active = {
        row["assigned_doctor"]: row["count"]
        for row in await Case.select(Case.assigned_doctor, Count(alias="count"))
        .where(Case.assigned_doctor.is_in(ids) & Case.status.is_in(list(states.WITH_A_DOCTOR)))
        .group_by(Case.assigned_doctor)
    }
    found = []
    for doctor in doctors:
        profile = profiles.get(doctor.id) or DoctorProfile()  # no row yet: the defaults
        found.append(
            Candidate(
                doctor=doctor,
                subspecialties=covered[doctor.id],
                reviews_children=profile.reviews_children,
                max_active=profile.max_active_cases,
                active=active.get(doctor.id, 0),
                away_until=away.get(doctor.id),
            )
        )
    return found


def problem_with(
    candidate: Candidate,
    *,
    child: bool,
    refused: set[int],
    needs: str = "",
    needs_label: str = "",
) -> str:
    """Why this doctor cannot take the case now, in a sentence for staff ("" if they can).
    `needs`: a subspecialty they must cover (the preferred doctor's rule)."""
    if candidate.doctor.id in refused:
        return "Declined this case, let the offer lapse or handed it back before."
    if candidate.away_until is not None:
        return f"Away until {candidate.away_until.strftime('%-d %B')}."
    if child and not candidate.reviews_children:
        return "Does not review children's cases."
    if candidate.active >= candidate.max_active:
        return f"Has as many cases as they take ({candidate.max_active})."
    if needs and needs not in candidate.subspecialties:
        return f"Does not cover {needs_label or needs}."
    return ""


async def away_today(specialty: str) -> dict[int, date]:
    """The doctors of `specialty` out of office today, and their last day away (the wizard
    shows "away until …" instead of offering them)."""
    return {c.doctor.id: c.away_until for c in await candidates(specialty, today()) if c.away_until}


async def _refused_doctors(case: Case) -> set[int]:
    rows = await Offer.select(Offer.doctor).where(
        (Offer.case == case.id) & Offer.status.is_in(list(REFUSED))
    )
    return {row["doctor"] for row in rows}


async def routing(case: Case) -> Routing:
    """Where the case can go now (see the module's docstring)."""
    on = today()
    age = subject_age(case, on)
    child = age is not None and age < CHILD_UNDER_YEARS
    specialty = context.plugins().specialty(case.specialty)
    needs = case.subspecialty or ""
    label = specialty.subspecialty_label(needs) if specialty else needs
    refused = await _refused_doctors(case)
    everyone = await candidates(case.specialty, on)
    preferred = next((c for c in everyone if c.doctor.id == case.preferred_doctor), None)
    preferred_problem = ""
    if case.preferred_doctor is not None:
        if preferred is None:
            preferred_problem = "No longer reviews this kind of case."
        else:
            preferred_problem = problem_with(
                preferred, child=child, refused=refused, needs=needs, needs_label=label
            )
    matches, others = [], []
    for candidate in everyone:
        problem = problem_with(candidate, child=child, refused=refused)
        if problem:
            others.append((candidate, problem))
        else:
            matches.append(candidate)
    matches.sort(key=lambda c: (needs not in c.subspecialties if needs else False, c.active))
    return Routing(needs, preferred, preferred_problem, matches, others)


# Offering -------------------------------------------------------------------------------------


def _respond_by(at: datetime) -> datetime:
    settings = context.settings()
    return working_days_later(
        at,
        settings.offer_response_working_days,
        time_zone=settings.time_zone,
        country=settings.holiday_country,
        weekend=settings.weekend_days,
    )


async def _open_offer(case: Case) -> Offer | None:
    return (
        await Offer.objects()
        .where((Offer.case == case.id) & Offer.status.is_in(list(OPEN_OFFERS)))
        .first()
    )


async def _make_offer(
    case: Case, doctor: User, actor: User | None, *, action: str, ip: str | None
) -> Offer:
    """In the caller's transaction: the state change, the offer row, who the case is with."""
    await cases.transition(case, action, actor, ip=ip)
    now = clock.now()
    made = Offer(
        uid=uuid.uuid4(),
        case=case.id,
        doctor=doctor.id,
        status=OFFERED,
        preferred=doctor.id == case.preferred_doctor,
        offered_by=actor.id if actor else None,
        offered_at=now,
        respond_by=_respond_by(now),
    )
    await Offer.insert(made)
    await cases.set_doctor(case, doctor.id)
    await messages.offered(case, doctor, made.respond_by)
    await audit.record_about(
        "case.offered", case, case=case, actor=actor, ip=ip, details={"doctor": str(doctor.uid)}
    )
    return made


async def route(case: Case, *, ip: str | None = None) -> Offer | None:
    """Offer a received case to the doctor `routing` chooses (by the system); None, and the
    case waits for the coordinators, when nobody can take it. Call in a transaction."""
    if case.status != states.RECEIVED:
        return None
    choice = (await routing(case)).choice
    if choice is None:
        return None
    return await _make_offer(case, choice.doctor, None, action="offer", ip=ip)


async def on_case_received(fact: CaseReceived) -> None:
    """A case was received: note the subspecialty it needs, and offer it (automatic mode)."""
    case = await locked_case(fact.case_id)
    if case is None:
        return
    plugins = context.plugins()
    specialty = plugins.specialty(case.specialty)
    if specialty is not None:
        age = subject_age(case, today())
        needs = plugins.suggest_subspecialty(specialty, cases.answers_of(case).values, age) or ""
        if needs:
            await cases.set_subspecialty(case, needs)
    if context.settings().assignment_mode != "automatic":
        await messages.to_coordinators(case, messages.COORDINATORS_CHOOSE, moved_on=False)
    elif await route(case) is None:
        await messages.to_coordinators(case, messages.NEEDS_A_DOCTOR, moved_on=False)


def subscribe(events: Events) -> None:
    events.subscribe(CaseReceived, on_case_received)


# Coordinators ----------------------------------------------------------------------------------


def _reason(text: str, *, what: str) -> str:
    reason = (text or "").strip()
    if not reason:
        raise InvalidInput({"reason": f"Say why {what}."})
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput({"reason": f"Use at most {MAX_REASON_CHARS} characters."})
    return reason


async def _doctor_for(case: Case, doctor_uid: str) -> User:
    """A doctor a coordinator chose for this case: one who can take it now."""
    routing_now = await routing(case)
    for candidate in routing_now.matches:
        if str(candidate.doctor.uid) == doctor_uid:
            return candidate.doctor
    raise InvalidInput({"doctor": "Choose one of the doctors who can take this case now."})


async def offer_to(case: Case, doctor_uid: str, coordinator: User, *, ip: str | None) -> Offer:
    """A coordinator offers a received case (waiting with nobody) to a doctor they chose."""
    async with db.transaction():
        case = await _locked(case)
        if case.status != states.RECEIVED:
            raise AssignmentRefused("This case is already with a doctor: move it instead.")
        doctor = await _doctor_for(case, doctor_uid)
        return await _make_offer(case, doctor, coordinator, action="offer", ip=ip)


async def move(
    case: Case, doctor_uid: str, coordinator: User, reason: str, *, ip: str | None
) -> Offer:
    """A coordinator moves a case that is with a doctor (offered or accepted) to another doctor,
    who is offered it; the first loses access at once. The reason is kept for staff."""
    reason = _reason(reason, what="the case moves to another doctor")
    async with db.transaction():
        case = await _locked(case)
        current = await _open_offer(case)
        if current is None or case.status not in states.TRANSITIONS["reassign"].sources:
            raise AssignmentRefused("This case is not with a doctor now.")
        doctor = await _doctor_for(case, doctor_uid)
        if doctor.id == current.doctor:
            raise InvalidInput({"doctor": "The case is already with this doctor."})
        await _end(current, MOVED, reason)
        return await _make_offer(case, doctor, coordinator, action="reassign", ip=ip)


# The doctor's answer ---------------------------------------------------------------------------


async def _locked(case: Case) -> Case:
    locked = await locked_case(case.id)
    if locked is None:
        raise cases.CaseNotFound
    return locked


async def _end(offer: Offer, status: str, reason: str = "", *, answered: bool = False) -> None:
    now = clock.now()
    values: dict[Any, Any] = {Offer.status: status, Offer.ended_at: now, Offer.reason: reason}
    if answered:
        values[Offer.answered_at] = now
    await Offer.update(values).where(Offer.id == offer.id)
    offer.status = status


async def _offer_for(case: Case, doctor: User, status: str = OFFERED) -> Offer:
    offer = await _open_offer(case)
    if offer is None or offer.doctor != doctor.id or offer.status != status:
        raise cases.CaseNotFound  # not theirs to answer: as if it did not exist
    return offer


async def accept(case: Case, doctor: User, *, no_conflict: bool, ip: str | None) -> Offer:
    """The offered doctor takes the case, declaring that neither they nor their institution
    were involved in the first opinion."""
    if not no_conflict:
        raise InvalidInput(
            {"no_conflict": "Confirm that you have no conflict of interest, or decline the case."}
        )
    async with db.transaction():
        case = await _locked(case)
        offer = await _offer_for(case, doctor)
        if offer.respond_by <= clock.now():
            raise AssignmentRefused(
                "This offer has lapsed: the case is being offered to another doctor."
            )
        await cases.transition(case, "accept", doctor, ip=ip)
        now = clock.now()
        await Offer.update(
            {Offer.status: ACCEPTED, Offer.answered_at: now, Offer.no_conflict_at: now}
        ).where(Offer.id == offer.id)
        offer.status = ACCEPTED
        await messages.accepted(case)
        return offer


async def decline(case: Case, doctor: User, reason: str, *, ip: str | None) -> Offer | None:
    """The offered doctor cannot take the case: it goes to the next match (returned), or to the
    coordinators."""
    reason = _reason(reason, what="you cannot take the case (staff read this, not the patient)")
    async with db.transaction():
        case = await _locked(case)
        offer = await _offer_for(case, doctor)
        await _end(offer, DECLINED, reason, answered=True)
        await cases.transition(case, "decline_offer", doctor, ip=ip)
        await cases.set_doctor(case, None)
        following = await route(case, ip=ip)
        await messages.to_coordinators(case, messages.DECLINED, moved_on=following is not None)
        return following


async def hand_back(case: Case, doctor: User, reason: str, *, ip: str | None) -> None:
    """The accepting doctor gives the case back: it waits for the coordinators."""
    reason = _reason(reason, what="you hand the case back (staff read this, not the patient)")
    async with db.transaction():
        case = await _locked(case)
        offer = await _offer_for(case, doctor, ACCEPTED)
        await _end(offer, HANDED_BACK, reason)
        await cases.transition(case, "hand_back", doctor, ip=ip)
        await cases.set_doctor(case, None)
        await messages.to_coordinators(case, messages.HANDED_BACK, moved_on=False)


async def expire_offers(limit: int = 50) -> int:
    """Offers not answered in time lapse; each case goes to the next match. Returns how many
    lapsed (run by the worker; each in its own transaction)."""
    due = (
        await Offer.objects()
        .where((Offer.status == OFFERED) & (Offer.respond_by <= clock.now()))
        .order_by(Offer.respond_by)
        .limit(limit)
    )
    lapsed = 0
    for offer in due:
        async with db.transaction():
            case = await locked_case(offer.case)
            current = await _open_offer(case) if case is not None else None
            if case is None or current is None or current.id != offer.id:
                continue  # answered or moved meanwhile
            if current.status != OFFERED or current.respond_by > clock.now():
                continue
            await _end(current, EXPIRED)
            await cases.transition(case, "offer_expired", None, ip=None)
            await cases.set_doctor(case, None)
            following = await route(case)
            await messages.to_coordinators(case, messages.LAPSED, moved_on=following is not None)
            lapsed += 1
    return lapsed


async def history(case: Case) -> list[Offer]:
    """Every offer of the case, oldest first (staff)."""
    return await Offer.objects(Offer.doctor).where(Offer.case == case.id).order_by(Offer.id)


# What pages show -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoctorLine:
    """One case in a doctor's "My cases": an offer to answer, or a case they accepted."""

    case: Case
    offer: Offer

    @property
    def is_offer(self) -> bool:
        return self.offer.status == OFFERED


async def doctor_cases(doctor: User) -> list[DoctorLine]:
    """The cases with this doctor: offers first (answer by soonest), then accepted cases by due
    date. Two queries; as long as the doctor's maximum of active cases."""
    # The cases the doctor holds now (at most their maximum), then their open offers: an
    # accepted offer stays "accepted" after the report, so offers alone would bring back every
    # case the doctor ever reviewed (measured: 6,942 rows, 1.5 s, for a doctor of 100k cases).
    found = await Case.objects().where(
        (Case.assigned_doctor == doctor.id) & Case.status.is_in(list(states.WITH_A_DOCTOR))
    )
    if not found:
        return []
    offers = await Offer.objects().where(
        (Offer.doctor == doctor.id)
        & Offer.status.is_in(list(OPEN_OFFERS))
        & Offer.case.is_in([case.id for case in found])
    )
    by_case = {offer.case: offer for offer in offers}
    found = [case for case in found if case.id in by_case]
    lines = [DoctorLine(case, by_case[case.id]) for case in found]
    far = date.max
    return sorted(
        lines,
        key=lambda line: (
            not line.is_offer,
            line.offer.respond_by if line.is_offer else clock.now(),
            line.case.due_on or far,
        ),
    )


async def doctor_case(doctor: User, uid: str) -> DoctorLine:
    """A case that is with this doctor (offered or accepted), with its open offer; anything
    else is not found for them."""
    case = await cases.get_case(uid)
    offer = await _open_offer(case)
    if offer is None or offer.doctor != doctor.id or case.assigned_doctor != doctor.id:
        raise cases.CaseNotFound
    return DoctorLine(case, offer)


@dataclass(frozen=True)
class PatientDoctor:
    """What the patient's page says about who reviews the case."""

    name: str
    title: str
    bio: str
    preferred_not_taken: str  # the preferred doctor's name when someone else took the case


async def patient_doctor(case: Case) -> PatientDoctor | None:
    """The accepting doctor, once a doctor has accepted (None before)."""
    offer = await _open_offer(case)
    if offer is None or offer.status != ACCEPTED:
        return None
    doctor = await User.objects().where(User.id == offer.doctor).first()
    profile = await DoctorProfile.objects().where(DoctorProfile.doctor == offer.doctor).first()
    not_taken = ""
    if case.preferred_doctor is not None and case.preferred_doctor != offer.doctor:
        preferred = (
            await User.select(User.full_name).where(User.id == case.preferred_doctor).first()
        )
        not_taken = preferred["full_name"] if preferred else ""
    return PatientDoctor(
        name=doctor.full_name if doctor else "",
        title=profile.title if profile else "",
        bio=doctor.bio if doctor else "",
        preferred_not_taken=not_taken,
    )


@dataclass(frozen=True)
class StaffView:
    """The "Doctor" section of the staff case page."""

    routing: Routing
    current: Offer | None
    history: list[Offer]
    names: dict[int, str]
    can_offer: bool  # received, with nobody: offer it to a doctor
    can_move: bool  # with a doctor: move it to another one

    @property
    def waiting_for_answer(self) -> bool:
        """The doctor it is with has not answered the offer yet."""
        return self.current is not None and self.current.status == OFFERED


async def staff_view(case: Case) -> StaffView:
    history = await Offer.objects().where(Offer.case == case.id).order_by(Offer.id)
    current = next((o for o in history if o.status in OPEN_OFFERS), None)
    ids = {o.doctor for o in history}
    names = {}
    if ids:
        rows = await User.select(User.id, User.full_name).where(User.id.is_in(list(ids)))
        names = {row["id"]: row["full_name"] for row in rows}
    return StaffView(
        routing=await routing(case),
        current=current,
        history=history,
        names=names,
        can_offer=case.status == states.RECEIVED,
        can_move=current is not None and case.status in states.TRANSITIONS["reassign"].sources,
    )

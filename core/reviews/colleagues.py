"""A colleague's opinion: the reviewing doctor invites another doctor (any specialty) to read
the case and comment, as MyConsult's doctors consult colleagues before signing.

While invited, the colleague reads the case read-only (a `CaseReader` grant: the records'
access rule lets them in, every read audited as any other); they never see the draft, which is
its author's alone. They answer the doctor's question with a comment and whether they concur.
Signing ends every invitation and keeps the colleagues' answers in the signed review.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import clock, context, db
from core.accounts.tables import DoctorProfile, User
from core.audit import service as audit
from core.cases import readers, states
from core.cases.tables import Case
from core.errors import InvalidInput, NotFound, Refused
from core.ids import parse_uuid
from core.notifications import service as notifications
from core.reviews.tables import ColleagueInvite
from core.roles import DOCTOR

CONCURS = {
    "yes": "Concurs",
    "partly": "Concurs in part",
    "no": "Does not concur",
}
OPEN_STATES = (states.ASSIGNED, states.IN_REVIEW, states.AWAITING_INFO)


class InviteNotFound(NotFound):
    pass


async def candidates(doctor: User) -> list[dict]:
    """Doctors who may be asked: every active doctor but the reviewing one."""
    return list(
        await User.select(User.uid, User.full_name)
        .where((User.role == DOCTOR) & User.is_active.eq(True) & (User.id != doctor.id))
        .order_by(User.full_name)
    )


async def invite(case: Case, doctor: User, values: dict[str, str], *, ip: str | None) -> None:
    if case.assigned_doctor != doctor.id or case.status not in OPEN_STATES:
        raise Refused("Only the reviewing doctor invites a colleague, before signing.")
    errors: dict[str, str] = {}
    parsed = parse_uuid(values.get("colleague", ""))
    colleague = (
        await User.objects()
        .where((User.uid == parsed) & (User.role == DOCTOR) & User.is_active.eq(True))
        .first()
        if parsed
        else None
    )
    if colleague is None or colleague.id == doctor.id:
        errors["colleague"] = "Choose the colleague to ask."
    question = (values.get("question") or "").strip()
    if not question:
        errors["question"] = "Say what you would like their opinion on."
    elif len(question) > 2000:
        errors["question"] = "Use at most 2,000 characters."
    if errors:
        raise InvalidInput(errors)
    assert colleague is not None
    already = await ColleagueInvite.exists().where(
        (ColleagueInvite.case == case.id)
        & (ColleagueInvite.colleague == colleague.id)
        & ColleagueInvite.ended_at.is_null()
    )
    if already:
        raise InvalidInput({"colleague": "This colleague is already invited."})
    row = ColleagueInvite(
        uid=uuid.uuid4(),
        case=case.id,
        colleague=colleague.id,
        invited_by=doctor.id,
        question=question,
    )
    async with db.transaction():
        await ColleagueInvite.insert(row)
        await readers.grant(case, colleague, doctor)
        await notifications.enqueue(
            to=colleague.email,
            template="colleague_invited",
            context={
                "reference": case.reference,
                "link": f"{context.settings().base_url}/doctor/consults/{row.uid}",
            },
        )
        await audit.record_about(
            "review.colleague_invited",
            row,
            case=case,
            actor=doctor,
            ip=ip,
            subject_uid=str(colleague.uid),
        )


async def withdraw(case: Case, doctor: User, invite_uid: str, *, ip: str | None) -> None:
    invite_row = await _open_invite(invite_uid, ColleagueInvite.case == case.id)
    if case.assigned_doctor != doctor.id:
        raise InviteNotFound()
    async with db.transaction():
        await _end(case, [invite_row])
        await audit.record_about(
            "review.colleague_withdrawn", invite_row, case=case, actor=doctor, ip=ip
        )


async def _open_invite(invite_uid: str, where: Any) -> ColleagueInvite:
    """An open invitation by its uid, within `where` (this case, or this colleague's)."""
    parsed = parse_uuid(invite_uid)
    row = (
        await ColleagueInvite.objects()
        .where((ColleagueInvite.uid == parsed) & where & ColleagueInvite.ended_at.is_null())
        .first()
        if parsed
        else None
    )
    if row is None:
        raise InviteNotFound()
    return row


async def _end(case: Case, rows: list[ColleagueInvite]) -> None:
    now = clock.now()
    for row in rows:
        await ColleagueInvite.update({ColleagueInvite.ended_at: now}).where(
            ColleagueInvite.id == row.id
        )
        await readers.end(case, row.colleague)


async def end_all(case: Case) -> None:
    """At signing (in its transaction): every colleague's access ends."""
    rows = await ColleagueInvite.objects().where(
        (ColleagueInvite.case == case.id) & ColleagueInvite.ended_at.is_null()
    )
    await _end(case, list(rows))


async def _invited(colleague: User, invite_uid: str) -> tuple[Case, ColleagueInvite]:
    row = await _open_invite(invite_uid, ColleagueInvite.colleague == colleague.id)
    case = await Case.objects().where(Case.id == row.case).first()
    if case is None:
        raise InviteNotFound()
    return case, row


async def consult(
    colleague: User, invite_uid: str, *, ip: str | None
) -> tuple[Case, ColleagueInvite]:
    """The case a colleague was invited to read, while the invitation is open; not found for
    anyone else. The read is audited."""
    case, row = await _invited(colleague, invite_uid)
    await audit.record_about("review.colleague_read", row, case=case, actor=colleague, ip=ip)
    return case, row


async def comment(
    colleague: User, invite_uid: str, values: dict[str, str], *, ip: str | None
) -> ColleagueInvite:
    """The colleague's answer (again to change it, until the review is signed)."""
    case, row = await _invited(colleague, invite_uid)
    errors: dict[str, str] = {}
    text = (values.get("comment") or "").strip()
    if not text:
        errors["comment"] = "Write your comment for the reviewing doctor."
    elif len(text) > 4000:
        errors["comment"] = "Use at most 4,000 characters."
    if values.get("concurs") not in CONCURS:
        errors["concurs"] = "Say whether you concur with the reviewing doctor."
    if errors:
        raise InvalidInput(errors)
    async with db.transaction():
        await ColleagueInvite.update(
            {
                ColleagueInvite.comment: text,
                ColleagueInvite.concurs: values["concurs"],
                ColleagueInvite.commented_at: clock.now(),
            }
        ).where((ColleagueInvite.id == row.id) & ColleagueInvite.ended_at.is_null())
        await audit.record_about("review.colleague_comment", row, case=case, actor=colleague, ip=ip)
    row.comment, row.concurs = text, values["concurs"]
    return row


@dataclass
class Opinion:
    uid: str
    name: str
    title: str
    question: str
    comment: str
    concurs: str  # in words; "" until they answer
    invited_at: datetime
    commented_at: datetime | None
    open: bool


async def opinions_of(case: Case) -> list[Opinion]:
    rows = (
        await ColleagueInvite.objects()
        .where(ColleagueInvite.case == case.id)
        .order_by(ColleagueInvite.invited_at)
    )
    if not rows:
        return []
    ids = [row.colleague for row in rows]
    names = {
        u["id"]: u["full_name"]
        for u in await User.select(User.id, User.full_name).where(User.id.is_in(ids))
    }
    titles = {
        p["doctor"]: p["title"]
        for p in await DoctorProfile.select(DoctorProfile.doctor, DoctorProfile.title).where(
            DoctorProfile.doctor.is_in(ids)
        )
    }
    return [
        Opinion(
            uid=str(row.uid),
            name=names.get(row.colleague, ""),
            title=titles.get(row.colleague, ""),
            question=row.question,
            comment=row.comment,
            concurs=CONCURS.get(row.concurs, ""),
            invited_at=row.invited_at,
            commented_at=row.commented_at,
            open=row.ended_at is None,
        )
        for row in rows
    ]


async def name_of(user_id: int | None) -> str:
    row = await User.select(User.full_name).where(User.id == (user_id or 0)).first()
    return row["full_name"] if row else ""

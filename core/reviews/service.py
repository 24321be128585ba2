"""The doctor's structured review: the draft they write, the checks before signing, the signed
review that nobody can change afterwards.

Who: only the doctor who accepted the case (assignment's rule); a draft is its author's alone.
The first save starts the review (assigned → in review). Signing needs the password and a
current code from the authenticator app, a draft that is the one previewed, every field valid
(the plugin's per field, core's, the plugin's `consilium_validate_review` across fields), and
the doctor's registration on their profile; it writes one immutable row (database triggers).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core import clock, context, db
from core.accounts import passwords, second_factor
from core.accounts import service as accounts
from core.accounts.tables import DoctorProfile, User
from core.assignment import service as assignment
from core.audit import service as audit
from core.cases import service as cases
from core.cases import states
from core.cases.tables import Case
from core.completeness.tables import MaterialArrival
from core.documents.listing import record_lines
from core.documents.records import COMPLETE
from core.documents.tables import Document
from core.errors import InvalidInput, Refused
from core.facts import ReviewSigned
from core.forms import Form, MappingFormData, StoredAnswers, summarise, visible_names
from core.plugins import PluginHost
from core.reviews import colleagues
from core.reviews.form import (
    AMEND_NOTIFIED,
    AMEND_REASON,
    CoreFields,
    Material,
    core_fields,
    cross_check,
    materials_from,
)
from core.reviews.tables import ReviewDraft, SignedReview
from core.specialty import Specialty

# What a page posts besides the fields: never part of the draft.
CONTROL_KEYS = {"version", "page", "action", "overwrite", "password", "code", "confirm"}


class NotAccepted(Refused):
    """The case is offered to this doctor, not accepted yet: there is nothing to review."""


class ReviewClosed(Refused):
    """The review cannot change now (signed, or the case left the doctor)."""


class StaleDraft(Refused):
    """A save based on an older version of the draft: refused, with the newer draft."""

    def __init__(self, current: Draft) -> None:
        super().__init__(
            "This draft was changed in another tab or window after this page loaded. "
            "Nothing was overwritten: the newer text is shown below."
        )
        self.current = current


class SignRefused(Refused):
    pass


@dataclass
class Draft:
    raw: dict[str, list[str]] = field(default_factory=dict)
    version: int = 0
    updated_at: datetime | None = None


async def accepted_case(doctor: User, uid: str) -> Case:
    """The case, when this doctor accepted it; not found for anyone else (CaseNotFound)."""
    line = await assignment.doctor_case(doctor, uid)
    if line.is_offer:
        raise NotAccepted("Accept the case before you start the review.")
    return line.case


async def draft_of(case: Case, doctor: User) -> Draft:
    row = (
        await ReviewDraft.select(ReviewDraft.entries, ReviewDraft.version, ReviewDraft.updated_at)
        .where((ReviewDraft.case == case.id) & (ReviewDraft.doctor == doctor.id))
        .first()
    )
    if row is None:
        return Draft()
    return Draft(json.loads(row["entries"] or "{}"), row["version"], row["updated_at"])


def _entries(raw: dict[str, list[str]]) -> dict[str, list[str]]:
    return {
        key: [str(v) for v in values]
        for key, values in raw.items()
        if key not in CONTROL_KEYS and not key.startswith("_")
    }


def new_page_id() -> str:
    """Names one load of the review form (a hidden field): saves from the same page never
    conflict with each other, saves from another tab do."""
    return secrets.token_hex(16)


async def save_draft(
    case: Case,
    doctor: User,
    raw: dict[str, list[str]],
    based_on: int,
    *,
    page: str = "",
    ip: str | None,
) -> Draft:
    """Keep what was typed, valid or not, if the draft is still the version `based_on` or was
    last saved by this same `page`; StaleDraft (with the newer draft) otherwise. The first save
    starts the review."""
    await _editable(case, doctor)
    if case.status == states.ASSIGNED:
        await cases.transition(case, "start_review", doctor, ip=ip)
    entries = json.dumps(_entries(raw))
    now = clock.now()
    if based_on == 0:
        # The first save; when another came first (a second tab), an update like any other.
        inserted = await ReviewDraft.raw(
            'INSERT INTO review_draft ("case", doctor, entries, version, page, updated_at) '
            'VALUES ({}, {}, {}, 1, {}, {}) ON CONFLICT ("case", doctor) DO NOTHING RETURNING id',
            case.id,
            doctor.id,
            entries,
            page,
            now,
        )
        if inserted:
            return Draft(json.loads(entries), 1, now)
    same_page = (ReviewDraft.page == page) if page else (ReviewDraft.id < 0)
    updated = (
        await ReviewDraft.update(
            {
                ReviewDraft.entries: entries,
                ReviewDraft.version: ReviewDraft.version + 1,
                ReviewDraft.page: page,
                ReviewDraft.updated_at: now,
            }
        )
        .where(
            (ReviewDraft.case == case.id)
            & (ReviewDraft.doctor == doctor.id)
            & ((ReviewDraft.version == based_on) | same_page)
        )
        .returning(ReviewDraft.version)
    )
    if not updated:
        raise StaleDraft(await draft_of(case, doctor))
    return Draft(json.loads(entries), updated[0]["version"], now)


async def _editable(case: Case, doctor: User) -> None:
    """The review is being written by this doctor, or they are amending the report they signed
    (a draft made by `start_amendment`)."""
    if await signed_of(case) is not None:
        if not await amending(case, doctor):
            raise ReviewClosed("This review is signed: it can no longer be changed.")
        return
    if case.assigned_doctor != doctor.id or case.status not in (
        states.ASSIGNED,
        states.IN_REVIEW,
        states.AWAITING_INFO,
    ):
        raise ReviewClosed("This review can no longer be changed.")


# Corrections after signing --------------------------------------------------------------------

AFTER_REPORT = (states.REPORT_READY, states.CLOSED)


async def _may_correct(case: Case, doctor: User) -> bool:
    """A doctor who signed a version of the report corrects it, once it is issued."""
    return case.status in AFTER_REPORT and await SignedReview.exists().where(
        (SignedReview.case == case.id) & (SignedReview.doctor == doctor.id)
    )


async def amending(case: Case, doctor: User) -> bool:
    """Whether this doctor has an amendment of the signed report open (its draft)."""
    return await _may_correct(case, doctor) and await ReviewDraft.exists().where(
        (ReviewDraft.case == case.id) & (ReviewDraft.doctor == doctor.id)
    )


def text_source(rows: Sequence[SignedReview]) -> SignedReview | None:
    """Of a case's signed rows (in sequence order), the one the report's text comes from: the
    review, or the latest amended report; addenda only follow it."""
    return next((r for r in reversed(rows) if json.loads(r.content).get("kind") != ADDENDUM), None)


async def last_full_review(case: Case) -> SignedReview | None:
    """The review the report's text comes from now (`text_source` of all the case's rows)."""
    rows = (
        await SignedReview.objects()
        .where(SignedReview.case == case.id)
        .order_by(SignedReview.sequence)
    )
    return text_source(list(rows))


async def start_amendment(case: Case, doctor: User, *, ip: str | None) -> None:
    """Open the signed review again as a draft, as it was signed: the doctor corrects it, says
    why and who was told, and signs an amended report that replaces it."""
    if not await _may_correct(case, doctor):
        raise ReviewClosed("Only the doctor who signed the report corrects it, once it is issued.")
    signed = await last_full_review(case)
    entries = json.loads(signed.content).get("entries", {}) if signed else {}
    for name in (AMEND_REASON, AMEND_NOTIFIED):
        entries.pop(name, None)  # a new amendment says its own why
    await ReviewDraft.raw(
        'INSERT INTO review_draft ("case", doctor, entries, version, page, updated_at) '
        "VALUES ({}, {}, {}, 1, '', {}) ON CONFLICT (\"case\", doctor) DO NOTHING",
        case.id,
        doctor.id,
        json.dumps(entries),
        clock.now(),
    )
    await audit.record_about("review.amend_start", case, case=case, actor=doctor, ip=ip)


async def cancel_amendment(case: Case, doctor: User, *, ip: str | None) -> None:
    if not await amending(case, doctor):
        return
    await ReviewDraft.delete().where(
        (ReviewDraft.case == case.id) & (ReviewDraft.doctor == doctor.id)
    )
    await audit.record_about("review.amend_cancel", case, case=case, actor=doctor, ip=ip)


# The form ---------------------------------------------------------------------------------


async def materials_of(case: Case, specialty: Specialty) -> list[Material]:
    """What the doctor may tick as reviewed: the records (with each imaging series) and the
    physical materials that arrived."""
    docs = list(
        await Document.objects()
        .where((Document.case == case.id) & (Document.status == COMPLETE))
        .order_by(Document.id)
    )
    arrivals = await MaterialArrival.objects().where(MaterialArrival.case == case.id)
    labels = {m.key: m.label for m in specialty.physical_materials}
    found = [
        (
            str(a.uid),
            labels.get(a.material, a.material),
            ", ".join(x for x in (f"{a.count} received", a.identifiers) if x),
        )
        for a in arrivals
    ]
    return materials_from(record_lines(docs), found)


@dataclass
class Workspace:
    """What the review page shows and checks: the plugin's form and core's fields for this case."""

    specialty: Specialty
    core: CoreFields
    materials: list[Material]
    amending: bool = False  # a correction of the signed report (its two fields added)

    @property
    def core_form(self) -> Form:
        return Form(version=1, fields=self.core.all)

    def in_words(self, raw: dict[str, list[str]]) -> list[dict[str, Any]]:
        """Whatever a draft holds, in words (a draft need not be valid)."""
        data = MappingFormData(raw)
        values, _ = self.specialty.review.validate(data)
        core_values, _ = self.core_form.validate(data)
        return summarise(self.specialty.review.fields, values) + summarise(
            self.core.all, core_values
        )

    def visible(self, raw: dict[str, list[str]]) -> set[str]:
        data = MappingFormData(raw)
        return visible_names(self.specialty.review, data) | visible_names(self.core_form, data)


async def workspace(case: Case, specialty: Specialty, *, amending: bool = False) -> Workspace:
    materials = await materials_of(case, specialty)
    fields = core_fields(specialty, cases.questions_of(case), materials, amending=amending)
    return Workspace(specialty, fields, materials, amending)


@dataclass
class Checked:
    """A draft checked as for signing: the cleaned values, and what is wrong."""

    specialty_values: dict[str, Any]
    core_values: dict[str, Any]
    errors: dict[str, str]


def check(space: Workspace, plugins: PluginHost, raw: dict[str, list[str]]) -> Checked:
    data = MappingFormData(raw)
    values, errors = space.specialty.review.validate(data)
    core_values, core_errors = space.core_form.validate(data)
    errors = {**errors, **core_errors}
    if not errors:
        across = {**values, "concordance": core_values.get("concordance")}
        errors = {
            **plugins.validate_review(space.specialty, across),
            **cross_check(space.specialty, core_values),
        }
    # In the page's order, so the summary at the top reads like the form.
    order = [
        "materials",
        *(f.name for f in space.specialty.review.fields),
        *(f.name for f in space.core.all),
    ]

    def place(key: str) -> int:
        top = key.split(".", 1)[0]
        return order.index(top) if top in order else len(order)

    errors = dict(sorted(errors.items(), key=lambda item: place(item[0])))
    return Checked(values, core_values, errors)


@dataclass
class Preview:
    """The review as it will read, and be kept: each part's answers in words, and what the
    colleagues asked answered."""

    specialty: list[dict[str, Any]]
    materials: list[str]
    answers: list[dict[str, Any]]
    conclusions: list[dict[str, Any]]
    colleagues: list[dict[str, str]]


async def preview(case: Case, space: Workspace, checked: Checked) -> Preview:
    chosen = set(checked.core_values.get("materials") or [])
    answered = [o for o in await colleagues.opinions_of(case) if o.commented_at is not None]
    return Preview(
        specialty=summarise(space.specialty.review.fields, checked.specialty_values),
        materials=[m.label for m in space.materials if m.value in chosen],
        answers=summarise(space.core.answers, checked.core_values),
        conclusions=summarise(space.core.conclusions, checked.core_values),
        colleagues=[
            {"name": o.name, "title": o.title, "concurs": o.concurs, "comment": o.comment}
            for o in answered
        ],
    )


# Signing ----------------------------------------------------------------------------------


async def signed_of(case: Case) -> SignedReview | None:
    return (
        await SignedReview.objects()
        .where(SignedReview.case == case.id)
        .order_by(SignedReview.sequence, ascending=False)
        .first()
    )


ADDENDUM, AMENDED = "addendum", "amended"


async def _profile_for_signing(doctor: User) -> DoctorProfile:
    profile = await DoctorProfile.objects().where(DoctorProfile.doctor == doctor.id).first()
    if profile is None or not (profile.registration_number and profile.registering_body):
        raise SignRefused(
            "Add your registration number and registering body in your settings: the report "
            "states them.",
            status=400,
        )
    return profile


async def _reauthenticate(
    case: Case, doctor: User, password: str, code: str, *, ip: str | None
) -> None:
    """The password and a current authenticator code, in the request that signs; wrong attempts
    slow down like sign-ins."""
    if wait := await accounts.reauth_wait(doctor):
        later = f"{wait} seconds" if wait < 120 else f"{wait // 60} minutes"
        raise SignRefused(f"Too many wrong attempts: try again in {later}.", status=429)
    good_password, _ = await passwords.verify_password(doctor.password_hash, password)
    # The code is spent only after a good password: a wrong password must not use up a step.
    if not (good_password and await second_factor.check_totp(doctor, code.strip())):
        await accounts.reauth_failed(doctor)
        await audit.record_about(
            "review.sign", case, case=case, actor=doctor, ip=ip, outcome="failure"
        )
        raise SignRefused(
            "The password or the code from your authenticator app is not right.", status=400
        )
    await accounts.reauth_passed(doctor)


async def _insert_signed(case: Case, row: SignedReview, *, ip: str | None, **after: Any) -> None:
    """Write the signed row and tell the other domains, in one transaction; a second signature
    of the same sequence (another tab) fails on the unique index and is ReviewClosed."""
    try:
        async with db.transaction():
            await SignedReview.insert(row)
            if after.get("end_draft"):
                await ReviewDraft.delete().where(
                    (ReviewDraft.case == case.id) & (ReviewDraft.doctor == row.doctor)
                )
            if after.get("first"):
                await colleagues.end_all(case)  # their read-only access ends with the review
                # The doctor's work is done: the clock stops here, not when the PDF is made.
                await cases.transition(case, "publish_report", after["doctor"], ip=ip)
            await context.current().events.publish(
                ReviewSigned(case_id=case.id, review_uid=row.uid)
            )
            await audit.record_about(
                "review.sign",
                row,
                case=case,
                actor=after["doctor"],
                ip=ip,
                details={"sequence": row.sequence, "kind": after.get("kind", "review")},
            )
    except Exception:
        taken = await SignedReview.exists().where(
            (SignedReview.case == case.id) & (SignedReview.sequence == row.sequence)
        )
        if taken:  # another tab signed first
            raise ReviewClosed("This review is signed: it can no longer be changed.") from None
        raise


def _signed_row(
    case: Case, doctor: User, profile: DoctorProfile, sequence: int, content: dict, **fields: Any
) -> SignedReview:
    text = json.dumps(content, sort_keys=True, ensure_ascii=False)
    return SignedReview(
        uid=uuid.uuid4(),
        case=case.id,
        sequence=sequence,
        doctor=doctor.id,
        specialty=case.specialty,
        content=text,
        content_sha256=hashlib.sha256(text.encode()).hexdigest(),
        signer_name=doctor.full_name,
        signer_title=profile.title,
        registration_number=profile.registration_number,
        registering_body=profile.registering_body,
        signed_at=clock.now(),
        **fields,
    )


async def sign(
    case: Case,
    doctor: User,
    space: Workspace,
    plugins: PluginHost,
    *,
    version: int,
    password: str,
    code: str,
    confirmed: bool,
    ip: str | None,
) -> SignedReview:
    """Sign the draft of `version`: the review, or (`space.amending`) an amended report that
    replaces the signed one. Refused (SignRefused) without confirmation, with a wrong password or
    code, or while a question to the patient is open; InvalidInput when a field is wrong;
    StaleDraft when the draft changed after the preview."""
    await _editable(case, doctor)
    draft = await draft_of(case, doctor)
    if draft.version != version or version == 0:
        raise StaleDraft(draft)
    if not confirmed:
        raise SignRefused("Tick the box to confirm that this is your opinion.", status=400)
    profile = await _profile_for_signing(doctor)
    await _reauthenticate(case, doctor, password, code, ip=ip)
    latest = await signed_of(case)
    if latest is None and case.status != states.IN_REVIEW:
        raise SignRefused(
            "A question to the patient is still open: sign when it is answered or withdrawn."
        )
    checked = check(space, plugins, draft.raw)
    if checked.errors:
        raise InvalidInput(checked.errors)
    # What is signed is what the preview showed, in words (the colleagues' answers included:
    # "reviewed with Dr …, who concurs"), with the values for statistics and the report, and
    # the form's entries (an amendment starts from them).
    shown = await preview(case, space, checked)
    core_values = dict(checked.core_values)
    content: dict[str, Any] = {
        "specialty": StoredAnswers.capture(
            space.specialty.review, checked.specialty_values
        ).as_json(),
        "core": StoredAnswers.capture(space.core_form, core_values).as_json(),
        "materials": shown.materials,
        "answers": shown.answers,
        "conclusions": shown.conclusions,
        "colleagues": shown.colleagues,
        "entries": draft.raw,
    }
    if latest is not None:  # an amended report: why, and who was told
        content.update(
            kind=AMENDED,
            reason=core_values.get(AMEND_REASON) or "",
            notified=core_values.get(AMEND_NOTIFIED) or "",
        )
    row = _signed_row(
        case,
        doctor,
        profile,
        latest.sequence + 1 if latest else 1,
        content,
        form_version=space.specialty.review.version,
        agreement=checked.core_values["agreement"],
        concordance=checked.core_values.get("concordance") or "",
    )
    await _insert_signed(
        case,
        row,
        ip=ip,
        doctor=doctor,
        end_draft=True,
        first=latest is None,
        kind=AMENDED if latest else "review",
    )
    return row


async def sign_addendum(
    case: Case,
    doctor: User,
    *,
    reason: str,
    text: str,
    password: str,
    code: str,
    confirmed: bool,
    ip: str | None,
) -> SignedReview:
    """Add new information to the issued report (a late result, an answer to a follow-up
    question): signed like the review; the report's text stays as it was, the addendum follows
    it in a new version."""
    if not await _may_correct(case, doctor):
        raise ReviewClosed("Only the doctor who signed the report adds to it, once it is issued.")
    reason, text = reason.strip(), text.strip()
    errors: dict[str, str] = {}
    if not text:
        errors["addendum_text"] = "Write the addendum."
    elif len(text) > 5000:
        errors["addendum_text"] = "Keep the addendum under 5,000 characters."
    if not reason:
        errors["addendum_reason"] = "Say what is new, in a sentence (for example, a late result)."
    elif len(reason) > 300:
        errors["addendum_reason"] = "Keep this under 300 characters."
    if errors:
        raise InvalidInput(errors)
    if not confirmed:
        raise SignRefused("Tick the box to confirm that this is your opinion.", status=400)
    profile = await _profile_for_signing(doctor)
    await _reauthenticate(case, doctor, password, code, ip=ip)
    latest = await signed_of(case)
    row = _signed_row(
        case,
        doctor,
        profile,
        latest.sequence + 1,
        {"kind": ADDENDUM, "reason": reason, "text": text},
        form_version=latest.form_version,
        agreement=latest.agreement,  # statistics count the current version's
        concordance=latest.concordance,
    )
    await _insert_signed(case, row, ip=ip, doctor=doctor, kind=ADDENDUM)
    return row


async def recently_signed(doctor: User, limit: int = 20) -> list[tuple[Case, datetime]]:
    """The cases whose report this doctor signed last (a version of it), newest first: where
    they add an addendum or correct a report. Two queries."""
    rows = (
        await SignedReview.select(SignedReview.case, SignedReview.signed_at)
        .where(SignedReview.doctor == doctor.id)
        .order_by(SignedReview.signed_at, ascending=False)
        .limit(limit * 3)  # a case with an addendum and an amendment has three rows
    )
    latest: dict[int, datetime] = {}
    for row in rows:
        latest.setdefault(row["case"], row["signed_at"])
    chosen = list(latest)[:limit]
    found = {c.id: c for c in await Case.objects().where(Case.id.is_in(chosen or [0]))}
    return [(found[i], latest[i]) for i in chosen if i in found]


def signed_content(review: SignedReview) -> dict[str, Any]:
    return json.loads(review.content)

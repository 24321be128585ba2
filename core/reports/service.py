"""Reports: each signed review (and later each addendum and amendment) becomes a version of the
case's report, rendered to a PDF that is signed (PAdES) and sealed like every record.

- In the transaction that signs, a `pending` version is written (ReviewSigned). After the
  commit the PDF is made in a worker process (core/reports/worker.py), sealed and stored, and
  the version becomes `issued`. A render that fails loses nothing: the version stays pending
  and the `issue_reports` job tries again.
- Once issued, the patient is told (email, no medical text) unless the doctor holds the report
  for a call and nobody has spoken with the patient yet; when that changes
  (ReportHoldChanged), they are told then. The patient reads only versions they were told of.
- The current version is the highest issued one; earlier ones are superseded, and stay
  readable and verifiable (`/verify`).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from core import clock, context, db
from core.accounts.tables import User
from core.audit import service as audit
from core.cases.reception import case_url
from core.cases.tables import Case
from core.documents.blobs import delete_blob, open_blob, seal_bytes
from core.errors import NotFound
from core.events import Events
from core.facts import ReportHoldChanged, ReviewSigned
from core.notifications import service as notifications
from core.reports import render, signing, worker
from core.reports.tables import Report, ReportVersion
from core.reports.verification import ISSUED, new_report_number, supersessions
from core.reviews import urgent
from core.reviews.tables import SignedReview
from core.roles import ADMIN, COORDINATOR, DOCTOR, PATIENT

log = logging.getLogger(__name__)

PENDING = "pending"  # then ISSUED (verification.py: /verify counts issued versions only)
KIND_WORDS = {"report": "the report", "addendum": "an addendum", "amended": "an amended report"}
MAX_ATTEMPTS = 20  # then a person must look (the job's page shows the error's type)


class ReportNotFound(NotFound):
    """No such report (or version) for this person."""


class ReportsNotIssued(Exception):
    """The job could not issue some report versions: raised so that /admin/jobs shows the job
    failing (by this type) and the scheduler tries again sooner; the versions stay pending."""


def subscribe(events: Events) -> None:
    events.subscribe(ReviewSigned, _on_signed)
    events.subscribe(ReportHoldChanged, _on_hold_changed)


# Issuing ------------------------------------------------------------------------------------


async def _on_signed(fact: ReviewSigned) -> None:
    review = await SignedReview.objects().where(SignedReview.uid == fact.review_uid).first()
    report = await Report.objects().where(Report.case == fact.case_id).first()
    if report is None:
        report = Report(uid=uuid.uuid4(), case=fact.case_id, number=new_report_number())
        await Report.insert(report)
    kind = json.loads(review.content).get("kind", render.REPORT)
    row = ReportVersion(
        uid=uuid.uuid4(),
        report=report.id,
        case=fact.case_id,
        version=review.sequence,
        kind=kind,
        review=review.id,
        status=PENDING,
        created_at=clock.now(),
    )
    await ReportVersion.insert(row)  # one per report and version: a unique index
    db.on_commit(lambda: produce_quietly(row.uid))


async def produce_quietly(uid: uuid.UUID) -> None:
    """`produce`, after the signing commits: a failure is the job's to retry, never the
    doctor's error page (their signature is kept)."""
    try:
        await produce(uid)
    except Exception:
        log.warning("report version %s not issued yet", uid, exc_info=True)


async def produce(uid: uuid.UUID) -> bool:
    """Render, sign, seal and store one pending version; True when this call issued it."""
    row = (
        await ReportVersion.objects()
        .where((ReportVersion.uid == uid) & (ReportVersion.status == PENDING))
        .first()
    )
    if row is None:
        return False
    ctx = context.current()
    settings = ctx.settings
    try:
        case = await Case.objects().where(Case.id == row.case).first()
        report = await Report.objects().where(Report.id == row.report).first()
        specialty = ctx.plugins.specialty(case.specialty)
        view = await render.build_view(
            case, report.number, await _reviews_up_to(row), specialty, settings, explain=False
        )
        job = worker.Job(
            view=view,
            folders=render.template_folders(ctx.plugins),
            specialty_template=specialty.report_template,
            glossary=specialty.glossary,
            verify_url=f"{settings.base_url}/verify",
            reason=f"Second opinion report {report.number}, version {row.version}",
            location=settings.hospital_name,
        )
        material = signing.load_material(settings)
        pdf = await worker.signed_pdf(job, material, workers=settings.report_workers)
        blob = await seal_bytes(ctx.records, pdf)
    except Exception as error:
        await ReportVersion.update(
            {
                ReportVersion.attempts: ReportVersion.attempts + 1,
                ReportVersion.last_error: type(error).__name__[:80],
            }
        ).where(ReportVersion.id == row.id)
        raise
    async with db.transaction():
        issued = (
            await ReportVersion.update(
                {
                    ReportVersion.status: ISSUED,
                    ReportVersion.storage_key: blob.storage_key,
                    ReportVersion.file_id: blob.file_id,
                    ReportVersion.key_id: blob.key_id,
                    ReportVersion.wrapped_key: blob.wrapped_key,
                    ReportVersion.size: blob.size,
                    ReportVersion.sha256: blob.sha256,
                    ReportVersion.issued_at: clock.now(),
                    ReportVersion.last_error: "",
                }
            )
            .where((ReportVersion.id == row.id) & (ReportVersion.status == PENDING))
            .returning(ReportVersion.id)
        )
        if issued:
            await audit.record_about(
                "report.issue",
                row,
                case=case,
                actor=None,
                details={"version": row.version, "kind": row.kind},
            )
            await _release(case)
    if not issued:  # another process issued it first: keep theirs
        await delete_blob(ctx.records, blob.storage_key)
    return bool(issued)


async def _reviews_up_to(row: ReportVersion) -> list[SignedReview]:
    return list(
        await SignedReview.objects()
        .where((SignedReview.case == row.case) & (SignedReview.sequence <= row.version))
        .order_by(SignedReview.sequence)
    )


async def _release(case: Case) -> int:
    """Tell the patient of every issued version they were not told of, unless the report is
    held for a call. In the caller's transaction; returns how many versions were released."""
    if (await urgent.urgency_of(case)).held_for_call:
        return 0
    released = (
        await ReportVersion.update({ReportVersion.released_at: clock.now()})
        .where(
            (ReportVersion.case == case.id)
            & (ReportVersion.status == ISSUED)
            & ReportVersion.released_at.is_null()
        )
        .returning(ReportVersion.version)
    )
    if released:
        patient = await User.objects().where(User.id == case.patient).first()
        settings = context.settings()
        await notifications.enqueue(
            to=patient.email,
            template="report_ready",
            context={
                "reference": case.reference,
                "case_url": case_url(case),
                "updated": min(r["version"] for r in released) > 1,
                "hospital_name": settings.hospital_name,
            },
        )
    return len(released)


async def _on_hold_changed(fact: ReportHoldChanged) -> None:
    case = await Case.objects().where(Case.id == fact.case_id).first()
    await _release(case)


async def issue_pending() -> int:
    """The periodic job: issue versions whose first try failed (or whose process died), and
    release issued versions nothing holds any more. Returns how many it issued."""
    cutoff = clock.now().timestamp() - 30  # the signing request is still making it
    rows = (
        await ReportVersion.objects()
        .where((ReportVersion.status == PENDING) & (ReportVersion.attempts < MAX_ATTEMPTS))
        .order_by(ReportVersion.id)
        .limit(20)
    )
    issued = failed = 0
    for row in rows:
        if row.attempts == 0 and row.created_at.timestamp() > cutoff:
            continue
        try:
            issued += await produce(row.uid)
        except Exception as error:  # counted on the row; the next run tries again
            failed += 1
            log.warning("report version %s failed again: %s", row.uid, type(error).__name__)
    unreleased = await ReportVersion.select(ReportVersion.case).where(
        (ReportVersion.status == ISSUED) & ReportVersion.released_at.is_null()
    )
    for case_id in {r["case"] for r in unreleased}:
        case = await Case.objects().where(Case.id == case_id).first()
        async with db.transaction():
            await _release(case)
    if failed:
        raise ReportsNotIssued(f"{failed} report version(s) could not be issued")
    return issued


# Reading ------------------------------------------------------------------------------------


@dataclass
class VersionLine:
    version: int
    kind: str
    status: str
    issued_at: datetime | None
    released: bool
    superseded_at: datetime | None  # when a later version was issued
    uid: str

    @property
    def kind_words(self) -> str:
        return KIND_WORDS.get(self.kind, self.kind)


@dataclass
class ReportState:
    """What a case's pages show of its report, for one reader."""

    number: str
    versions: list[VersionLine]  # the reader's, oldest first
    pending: bool  # a version is being made
    held: bool  # issued, but held for a call with the patient

    @property
    def current(self) -> VersionLine | None:
        issued = [v for v in self.versions if v.status == ISSUED]
        return issued[-1] if issued else None

    def version(self, number: int) -> VersionLine | None:
        return next((v for v in self.versions if v.version == number), None)


async def may_read(user: User, case: Case) -> bool:
    """The patient who owns the case, coordinators and admins, and the doctors who signed a
    version of its report (its reviewer, after the case left them too)."""
    if user.role == PATIENT:
        return case.patient == user.id
    if user.role in (COORDINATOR, ADMIN):
        return True
    if user.role == DOCTOR:
        return case.assigned_doctor == user.id or await SignedReview.exists().where(
            (SignedReview.case == case.id) & (SignedReview.doctor == user.id)
        )
    return False


async def state_of(case: Case, reader: User) -> ReportState | None:
    """The report of `case` as `reader` may see it, or None (none yet, or not theirs). A
    patient sees the versions they were told of, and that one is on its way."""
    if not await may_read(reader, case):
        return None
    report = await Report.objects().where(Report.case == case.id).first()
    if report is None:
        return None
    rows = list(
        await ReportVersion.objects()
        .where(ReportVersion.report == report.id)
        .order_by(ReportVersion.version)
    )
    replaced = supersessions({r.version: r.issued_at for r in rows if r.status == ISSUED})
    lines = []
    for row in rows:
        lines.append(
            VersionLine(
                version=row.version,
                kind=row.kind,
                status=row.status,
                issued_at=row.issued_at,
                released=row.released_at is not None,
                superseded_at=replaced[row.version][1] if row.version in replaced else None,
                uid=str(row.uid),
            )
        )
    patient = reader.role == PATIENT
    shown = [v for v in lines if v.released] if patient else lines
    return ReportState(
        number=report.number,
        versions=[v for v in shown if v.status == ISSUED],
        pending=any(v.status == PENDING for v in lines),
        held=any(v.status == ISSUED and not v.released for v in lines),
    )


async def patient_word(case: Case, reader: User) -> str:
    """Where the report is, for the patient's status line: "ready", "held", "preparing", or ""
    (no report yet)."""
    state = await state_of(case, reader)
    if state is None:
        return ""
    if state.current is not None:
        return "ready"
    return "held" if state.held else "preparing" if state.pending else ""


async def readable_version(case: Case, reader: User, number: int | None) -> VersionLine:
    """One version the reader may open (the current one when `number` is None)."""
    state = await state_of(case, reader)
    line = None
    if state is not None:
        line = state.current if number is None else state.version(number)
    if line is None:
        raise ReportNotFound
    return line


async def view_of(case: Case, line: VersionLine) -> render.ReportView:
    row = await ReportVersion.objects().where(ReportVersion.uid == uuid.UUID(line.uid)).first()
    report = await Report.objects().where(Report.id == row.report).first()
    ctx = context.current()
    return await render.build_view(
        case,
        report.number,
        await _reviews_up_to(row),
        ctx.plugins.specialty(case.specialty),
        ctx.settings,
    )


async def record_read(
    case: Case, line: VersionLine, reader: User | None, action: str, *, ip: str | None, **extra
) -> None:
    """Every opening of a report is audited; the patient sees them in "who opened my
    records"."""
    await audit.record_about(
        f"report.{action}",
        uuid.UUID(line.uid),
        case=case,
        actor=reader,
        ip=ip,
        details={"version": line.version, **extra},
    )


async def pdf_of(case: Case, line: VersionLine) -> bytes:
    row = await ReportVersion.objects().where(ReportVersion.uid == uuid.UUID(line.uid)).first()
    return await open_blob(context.current().records, row)


def filename_of(number: str, version: int) -> str:
    return f"second-opinion-report-{number}-v{version}.pdf"

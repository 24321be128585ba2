"""Read-only grants to a case (`CaseReader`): someone who is neither its patient, staff nor
its doctor may read it while a grant is open — a colleague the reviewing doctor asked for an
opinion (core/reviews/colleagues.py). The records' access rule reads `is_reader`."""

from __future__ import annotations

import uuid

from core import clock
from core.accounts.tables import User
from core.cases.tables import Case, CaseReader


async def grant(case: Case, reader: User, by: User) -> None:
    """Open a grant (in the caller's transaction); one open grant per reader is enough."""
    if await is_reader(case, reader):
        return
    await CaseReader.insert(
        CaseReader(uid=uuid.uuid4(), case=case.id, reader=reader.id, granted_by=by.id)
    )


async def end(case: Case, reader_id: int | None = None) -> None:
    """End the open grants of a case (of one reader, or all of them)."""
    where = (CaseReader.case == case.id) & CaseReader.ended_at.is_null()
    if reader_id is not None:
        where &= CaseReader.reader == reader_id
    await CaseReader.update({CaseReader.ended_at: clock.now()}).where(where)


async def is_reader(case: Case, user: User) -> bool:
    return await CaseReader.exists().where(
        (CaseReader.case == case.id)
        & (CaseReader.reader == user.id)
        & CaseReader.ended_at.is_null()
    )

"""``GET /v1/studies``: a caller's studies, newest first, a page at a time.

Pages follow a cursor, not an offset: the cursor names the (created_at, id) the last page
ended on, so studies submitted or deleted between two requests neither repeat an item nor
skip one, and a page costs an index seek however deep it is.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from api.errors import InvalidRequest
from api.schemas import Progress, StudyList, StudySummary
from api.study.jobs import Job, JobState, Page
from api.study.services import Services


def encode_cursor(job: Job) -> str:
    """The cursor of the page after ``job`` (url-safe; ``repr`` keeps the float exact)."""
    return base64.urlsafe_b64encode(f"{job.created_at!r}/{job.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (created_at, id) a cursor names; a cursor this service did not make is a 422."""
    try:
        created_at, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("/")
        position = (float(created_at), job_id)
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidRequest("query.cursor: not a cursor this service gave") from exc
    if not job_id:
        raise InvalidRequest("query.cursor: not a cursor this service gave")
    return position


def list_jobs(services: Services, owner: str | None, states: Sequence[str], limit: int,
              cursor: str | None) -> StudyList:
    """One page of the jobs of ``owner`` (None: everyone's), with the next page's cursor."""
    page = Page(owner=owner, states=tuple(JobState(state) for state in states),
                after=decode_cursor(cursor) if cursor else None, limit=limit + 1)
    jobs = services.jobs.page(page)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    items = [
        StudySummary(id=job.id, state=job.state.value, created_at=job.created_at,
                     updated_at=job.updated_at,
                     progress=Progress(slices_done=job.slices_done,
                                       slices_total=job.slices_total))
        for job in jobs
    ]
    return StudyList(items=items, next_cursor=encode_cursor(jobs[-1]) if more else None)

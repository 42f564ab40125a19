"""What the study routes answer: job documents, mask and overlay PNGs, deletion.

Every function takes the ``viewer``: the client whose studies the caller may see, or None for
an admin, who sees every client's. A study of anyone else answers exactly like one that does
not exist, so that ids are never confirmed to strangers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from api.errors import JobNotFinished, JobNotFound, NoDestination, SliceNotFound
from api.schemas import (
    Delivery,
    Problem,
    Progress,
    SliceResult,
    StudyJob,
    StudyResult,
    WebhookDelivery,
)
from api.schemas.submission import SubmissionMetadata
from api.study.deliveries import Delivery as StoredDelivery
from api.study.jobs import Job, JobState
from api.study.services import Services
from api.study.webhooks import Webhook

if TYPE_CHECKING:
    from api.study.overlays import OverlayWindow

# A stored link's path, and the study's owner, to the link a caller is given.
LinkMaker = Callable[[str, str | None], str]


def visible(owner: str | None, viewer: str | None) -> bool:
    """Whether a study of ``owner`` exists for ``viewer`` (None: an admin, who sees all).

    A study stored before owners has none; the links an admin is given for it name the
    empty client, which no caller is.
    """
    return viewer is None or (owner or "") == viewer


def _job(job_id: str, services: Services, viewer: str | None) -> Job:
    job = services.jobs.get(job_id) if services.store.exists(job_id) else None
    if job is None or not visible(job.owner, viewer):
        # The same words for a stranger's study as for none: the id is not confirmed.
        raise JobNotFound("no such study job; it may have been deleted or expired")
    return job


def job_view(job_id: str, services: Services, viewer: str | None,
             link: LinkMaker | None = None) -> StudyJob:
    """The job document of ``GET /v1/studies/{id}``; ``link`` turns stored paths into links."""
    job = _job(job_id, services, viewer)
    result = services.store.read_result(job_id) if job.state is JobState.SUCCEEDED else None
    viewer_url = None
    if result is not None and link is not None:
        result = _linked(result, job.owner, link)
        viewer_url = link(f"/v1/studies/{job_id}/viewer", job.owner)
    error = None
    if job.error is not None:
        error = Problem(type=job.error.type, title=job.error.title, status=job.error.status,
                        detail=job.error.detail, instance=f"/v1/studies/{job_id}")
    return StudyJob(
        id=job.id, state=job.state.value,
        progress=Progress(slices_done=job.slices_done, slices_total=job.slices_total),
        created_at=job.created_at, updated_at=job.updated_at, error=error, result=result,
        viewer_url=viewer_url,
        priority=job.priority_name,
        metadata=_shown(job.metadata),
        deliveries=[_delivery(d) for d in services.jobs.deliveries.of_job(job_id)],
        webhooks=[_webhook(w) for w in services.jobs.webhooks.of_job(job_id)],
    )


def _shown(metadata: SubmissionMetadata) -> SubmissionMetadata | None:
    """The metadata as submitted, but the callback URL's query: it may carry the caller's
    own token, which an admin reading the job has no use for."""
    if metadata.is_empty():
        return None
    url = metadata.callback_url
    if url is None:
        return metadata
    return metadata.model_copy(update={"callback_url": urlsplit(url)._replace(
        query="", fragment="").geturl()})


def resend(job_id: str, services: Services, viewer: str | None) -> list[Delivery]:
    """Send a finished study's SEG and SR again to every destination its client has now."""
    job = _job(job_id, services, viewer)
    if job.state is not JobState.SUCCEEDED:
        raise JobNotFinished(f"study job {job_id} is {job.state.value}; only a result is sent")
    names = services.deliver_to(job.owner)
    if not names:
        raise NoDestination("no destination is configured for this study's client"
                            " (BONEMETS_DESTINATIONS); nothing was sent")
    services.jobs.deliveries.resend(job_id, names)
    return [_delivery(d) for d in services.jobs.deliveries.of_job(job_id)]


def _delivery(row: StoredDelivery) -> Delivery:
    return Delivery(destination=row.destination, state=row.state.value, attempts=row.attempts,
                    objects=list(row.objects), since=row.since,
                    last_attempt_at=row.last_attempt_at, next_attempt_at=row.next_attempt_at,
                    delivered_at=row.delivered_at, detail=row.detail)


def _webhook(row: Webhook) -> WebhookDelivery:
    # The host only: the URL's path and query may carry the caller's own tokens.
    return WebhookDelivery(event=row.event_type, host=urlsplit(row.url).hostname or "",
                           state=row.state.value, attempts=row.attempts,
                           last_status=row.last_status, since=row.since,
                           last_attempt_at=row.last_attempt_at,
                           next_attempt_at=row.next_attempt_at, delivered_at=row.delivered_at,
                           detail=row.detail)


def submit_status(job: StudyJob) -> int:
    """200 when finished with a result, the problem's status when failed, else 202."""
    if job.state == JobState.SUCCEEDED.value:
        return 200
    if job.state == JobState.FAILED.value and job.error is not None:
        return job.error.status
    return 202


def _linked(result: StudyResult, owner: str | None, link: LinkMaker) -> StudyResult:
    """The result with each slice's links made by ``link`` (stored, it keeps plain paths)."""
    slices = [
        entry.model_copy(update={"mask_url": link(entry.mask_url, owner),
                                 "overlay_url": link(entry.overlay_url, owner)})
        for entry in result.slices
    ]
    return result.model_copy(update={"slices": slices})


def _slice_entry(job_id: str, index: int, services: Services,
                 viewer: str | None) -> tuple[StudyResult, SliceResult]:
    job = _job(job_id, services, viewer)
    if job.state is not JobState.SUCCEEDED:
        raise JobNotFinished(f"study job {job_id} is {job.state.value}; masks come with the result")
    result = services.store.read_result(job_id)
    if result is None:
        raise JobNotFound(f"the result of study job {job_id} is gone")
    slices = result.slices
    if not 0 <= index < len(slices):
        raise SliceNotFound(f"slice index {index} is outside 0..{len(slices) - 1}")
    return result, slices[index]


async def mask_png(job_id: str, index: int, services: Services, viewer: str | None) -> bytes:
    """The stored mask of one slice as a PNG at the slice's own size."""
    from api.lesions.render import mask_png as render_mask

    _, entry = _slice_entry(job_id, index, services, viewer)
    shape = (entry.rows, entry.columns)
    mask = await asyncio.to_thread(services.store.read_mask, job_id, index, shape)
    return await asyncio.to_thread(render_mask, mask)


async def overlay_png(job_id: str, index: int, services: Services,
                      viewer: str | None, window: OverlayWindow = "model") -> bytes:
    """The slice in the model's (first) window, or ``window``, with lesion outlines and
    boxes."""
    from api.study.overlays import render_overlay

    result, entry = _slice_entry(job_id, index, services, viewer)
    return await asyncio.to_thread(render_overlay, services.store, job_id, result, entry,
                                   window)


async def delete_job(job_id: str, services: Services, viewer: str | None) -> None:
    """Stop the job if it runs, then remove its row, upload, result and masks."""
    _job(job_id, services, viewer)
    await services.runner.cancel(job_id)
    services.jobs.delete(job_id)
    await asyncio.to_thread(services.store.delete, job_id)

"""What the study routes answer: job documents, mask and overlay PNGs, deletion."""

from __future__ import annotations

import asyncio

from api.errors import JobNotFinished, JobNotFound, SliceNotFound
from api.schemas import Problem, Progress, SliceResult, StudyJob, StudyResult
from api.study.jobs import Job, JobState
from api.study.services import Services


def _job(job_id: str, services: Services) -> Job:
    job = services.jobs.get(job_id) if services.store.exists(job_id) else None
    if job is None:
        raise JobNotFound(f"no study job {job_id!r}; it may have been deleted or expired")
    return job


def job_view(job_id: str, services: Services) -> StudyJob:
    """The job document of ``GET /v1/studies/{id}``."""
    job = _job(job_id, services)
    result = services.store.read_result(job_id) if job.state is JobState.SUCCEEDED else None
    error = None
    if job.error is not None:
        error = Problem(type=job.error.type, title=job.error.title, status=job.error.status,
                        detail=job.error.detail, instance=f"/v1/studies/{job_id}")
    return StudyJob(
        id=job.id, state=job.state.value,
        progress=Progress(slices_done=job.slices_done, slices_total=job.slices_total),
        created_at=job.created_at, updated_at=job.updated_at, error=error, result=result,
    )


def submit_status(job: StudyJob) -> int:
    """200 when finished with a result, the problem's status when failed, else 202."""
    if job.state == JobState.SUCCEEDED.value:
        return 200
    if job.state == JobState.FAILED.value and job.error is not None:
        return job.error.status
    return 202


def _slice_entry(job_id: str, index: int, services: Services) -> tuple[StudyResult, SliceResult]:
    job = _job(job_id, services)
    if job.state is not JobState.SUCCEEDED:
        raise JobNotFinished(f"study job {job_id} is {job.state.value}; masks come with the result")
    result = services.store.read_result(job_id)
    if result is None:
        raise JobNotFound(f"the result of study job {job_id} is gone")
    slices = result.slices
    if not 0 <= index < len(slices):
        raise SliceNotFound(f"slice index {index} is outside 0..{len(slices) - 1}")
    return result, slices[index]


async def mask_png(job_id: str, index: int, services: Services) -> bytes:
    """The stored mask of one slice as a PNG at the slice's own size."""
    from api.lesions.render import mask_png as render_mask

    _, entry = _slice_entry(job_id, index, services)
    shape = (entry.rows, entry.columns)
    mask = await asyncio.to_thread(services.store.read_mask, job_id, index, shape)
    return await asyncio.to_thread(render_mask, mask)


async def overlay_png(job_id: str, index: int, services: Services) -> bytes:
    """The slice in the model's (first) window with lesion outlines and boxes."""
    from api.study.overlays import render_overlay

    result, entry = _slice_entry(job_id, index, services)
    return await asyncio.to_thread(render_overlay, services.store, job_id, result, entry)


async def delete_job(job_id: str, services: Services) -> None:
    """Stop the job if it runs, then remove its row, upload, result and masks."""
    _job(job_id, services)
    await services.runner.cancel(job_id)
    services.jobs.delete(job_id)
    await asyncio.to_thread(services.store.delete, job_id)

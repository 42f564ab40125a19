"""Studies: upload, follow, fetch masks and overlays, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.http.deps import ServicesDep
from api.http.multipart import stream_parts
from api.http.problems import problem_response, problem_responses
from api.schemas import StudyJob
from api.study import intake, views

router = APIRouter(prefix="/v1/studies", tags=["studies"])

PNG: dict[int | str, dict[str, Any]] = {
    200: {"description": "PNG image",
          "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["files"],
            "properties": {"files": {
                "type": "array", "items": {"type": "string", "format": "binary"},
                "description": "DICOM files and/or zips of them (one series is chosen)",
            }},
        }}},
    }
}
SUBMITTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued or running: the job, with `Location` to poll"},
    200: {"model": StudyJob, "description": "Done within `wait`: the job with its result"},
    # 4xx: the upload refused at once; 5xx: the job failed within `wait`, with its problem.
    **problem_responses(400, 413, 415, 422, 502, 503, 504),
}
SLICE_PNG = {**PNG, **problem_responses(404, 409, 422)}


@router.post("", status_code=202, response_model=StudyJob, openapi_extra=UPLOAD_BODY,
             responses=SUBMITTED)
async def submit_study(
    request: Request,
    response: Response,
    services: ServicesDep,
    wait: Annotated[float, Query(ge=0, le=600, description="seconds to wait for the result")] = 0,
) -> Response | StudyJob:
    """Upload one CT study; 202 with the job, or 200 with the result when done within `wait`."""
    content_type = request.headers.get("content-type", "")

    async def write_parts(folder: Path) -> int:
        return await stream_parts(content_type, request.stream(), folder)

    job_id = await intake.receive_study(write_parts, services)
    if wait > 0:
        await services.runner.wait(job_id, wait)
    job = views.job_view(job_id, services)
    location = {"Location": str(request.url_for("get_study", job_id=job_id).path)}
    status = views.submit_status(job)
    if job.error is not None and status >= 400:
        return problem_response(job.error, headers=location)
    response.status_code = status
    response.headers.update(location)
    return job


@router.get("/{job_id}", response_model=StudyJob, responses=problem_responses(404, 422))
async def get_study(job_id: str, services: ServicesDep) -> StudyJob:
    """The job's state, progress, error or result."""
    return views.job_view(job_id, services)


@router.get("/{job_id}/slices/{index}/mask.png", response_class=Response, responses=SLICE_PNG)
async def get_mask(job_id: str, index: int, services: ServicesDep) -> Response:
    """The slice's binary mask (0 or 255) at the slice's own size."""
    png = await views.mask_png(job_id, index, services)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{job_id}/slices/{index}/overlay.png", response_class=Response,
            responses=SLICE_PNG)
async def get_overlay(job_id: str, index: int, services: ServicesDep) -> Response:
    """The slice in the bone window with lesion outlines and boxes, for people to look at."""
    png = await views.overlay_png(job_id, index, services)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/{job_id}", status_code=204, responses=problem_responses(404, 422))
async def delete_study(job_id: str, services: ServicesDep) -> Response:
    """Remove the job and everything stored for it."""
    await views.delete_job(job_id, services)
    return Response(status_code=204)

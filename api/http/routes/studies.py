"""Studies: upload, follow, fetch masks and overlays, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api.http.deps import ServicesDep
from api.http.problems import PROBLEM_MEDIA_TYPE
from api.schemas import Problem, StudyJob
from api.study import intake, views

router = APIRouter(prefix="/v1/studies", tags=["studies"])

PROBLEMS: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
    for status in (400, 404, 409, 413, 415, 422, 503, 504)
}
PNG: dict[int | str, dict[str, object]] = {
    200: {"content": {"image/png": {}}, "description": "PNG image"}
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


@router.post("", status_code=202, response_model=StudyJob, openapi_extra=UPLOAD_BODY,
             responses={200: {"model": StudyJob}, **PROBLEMS})
async def submit_study(
    request: Request,
    services: ServicesDep,
    wait: Annotated[float, Query(ge=0, le=600, description="seconds to wait for the result")] = 0,
) -> JSONResponse:
    """Upload one CT study; 202 with the job, or 200 with the result when done within `wait`."""
    content_type = request.headers.get("content-type", "")
    job_id = await intake.receive_study(content_type, request.stream(), services)
    if wait > 0:
        await services.runner.wait(job_id, wait)
    job = views.job_view(job_id, services)
    location = str(request.url_for("get_study", job_id=job_id).path)
    status = views.submit_status(job)
    media = PROBLEM_MEDIA_TYPE if status >= 400 else "application/json"
    body = job["error"] if status >= 400 else job
    return JSONResponse(body, status_code=status, headers={"Location": location}, media_type=media)


@router.get("/{job_id}", response_model=StudyJob, responses=PROBLEMS)
async def get_study(job_id: str, services: ServicesDep) -> JSONResponse:
    """The job's state, progress, error or result."""
    return JSONResponse(views.job_view(job_id, services))


@router.get("/{job_id}/slices/{index}/mask.png", response_class=Response,
            responses={**PNG, **PROBLEMS})
async def get_mask(job_id: str, index: int, services: ServicesDep) -> Response:
    """The slice's binary mask (0 or 255) at the slice's own size."""
    png = await views.mask_png(job_id, index, services)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{job_id}/slices/{index}/overlay.png", response_class=Response,
            responses={**PNG, **PROBLEMS})
async def get_overlay(job_id: str, index: int, services: ServicesDep) -> Response:
    """The slice in the bone window with lesion outlines and boxes, for people to look at."""
    png = await views.overlay_png(job_id, index, services)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/{job_id}", status_code=204, responses=PROBLEMS)
async def delete_study(job_id: str, services: ServicesDep) -> Response:
    """Remove the job and everything stored for it."""
    await views.delete_job(job_id, services)
    return Response(status_code=204)

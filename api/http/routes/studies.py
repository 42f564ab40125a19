"""Studies: upload, list, follow, fetch masks and overlays, delete: each caller its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError

from api.errors import Forbidden, InvalidMetadata
from api.http.auth import Deleter, Reader, Submitter
from api.http.deps import ServicesDep
from api.http.links import LinkOrReader, LinksDep, viewer_of
from api.http.multipart import stream_parts
from api.http.problems import problem_response, problem_responses
from api.http.quotas import UploadQuota
from api.schemas import StudyJob, StudyList
from api.schemas.submission import METADATA, NO_METADATA, SubmissionMetadata
from api.study import intake, listing, views
from api.study.jobs import PRIORITY_RANKS, IdempotencyKey

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
            "properties": {
                "files": {
                    "type": "array", "items": {"type": "string", "format": "binary"},
                    "description": "DICOM files and/or zips of them (one series is chosen)",
                },
                "metadata": {
                    "allOf": [{"$ref": "#/components/schemas/SubmissionMetadata"}],
                    "description": "optional: the caller's own ids and FHIR references for"
                    " the study (a JSON object), echoed in its FHIR Bundle and webhook"
                    " events; patient data, never logged",
                    "example": METADATA,
                },
            },
        }, "encoding": {"metadata": {"contentType": "application/json"}}}},
    }
}
SUBMITTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued or running: the job, with `Location` to poll"},
    200: {"model": StudyJob, "description": "Done within `wait`: the job with its result; or"
          " the job an earlier request with this `Idempotency-Key` made, in whatever state"
          " (`Idempotent-Replayed: true`)"},
    # 4xx: the upload refused at once (409: an Idempotency-Key sent with another body); 5xx:
    # the job failed within `wait`, with its problem.
    **problem_responses(400, 403, 409, 413, 415, 422, 429, 502, 503, 504),
}
SLICE_PNG = {**PNG, **problem_responses(403, 404, 409, 422)}
State = Literal["queued", "running", "succeeded", "failed"]


@router.post("", status_code=202, response_model=StudyJob, openapi_extra=UPLOAD_BODY,
             responses=SUBMITTED)
async def submit_study(
    request: Request,
    response: Response,
    services: ServicesDep,
    principal: Submitter,
    _: UploadQuota,
    links: LinksDep,
    wait: Annotated[float, Query(ge=0, le=600, description="seconds to wait for the result")] = 0,
    priority: Annotated[Literal["routine", "stat"], Query(
        description="stat: taken before every routine study waiting (not before one running)",
    )] = "routine",
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", pattern=r"^[!-~]{1,255}$",
        description="the caller's id for this submission (a UUID, or its accession number):"
        " sent again with the same files and metadata within `idempotency_window_h`, it"
        " answers 200 with the job the first request made instead of running the study"
        " twice; with other files or metadata, 409",
        examples=["3f1c9a2e-7d4b-4e8a-9c61-0b5d2e7f8a13"],
    )] = None,
) -> Response | StudyJob:
    """Upload one CT study; 202 with the job, or 200 with the result when done within `wait`."""
    content_type = request.headers.get("content-type", "")
    rank = PRIORITY_RANKS[priority]

    async def write_parts(folder: Path) -> intake.Submission:
        parts = await stream_parts(content_type, request.stream(), folder,
                                   digest=idempotency_key is not None)
        metadata = _metadata(parts.fields.get("metadata"))
        key = None if idempotency_key is None else IdempotencyKey(
            idempotency_key, intake.request_digest(parts.digest, metadata, rank))
        return intake.Submission(rank, metadata, key)

    job_id, replayed = await intake.receive_study(write_parts, services, owner=principal.client)
    if wait > 0:
        await services.runner.wait(job_id, wait)
    job = views.job_view(job_id, services, principal.client, links)  # the owner: its submitter
    location = {"Location": str(request.url_for("get_study", job_id=job_id).path)}
    if replayed:
        response.headers.update({**location, "Idempotent-Replayed": "true"})
        response.status_code = 200
        return job
    status = views.submit_status(job)
    if job.error is not None and status >= 400:
        return problem_response(job.error, headers=location)
    response.status_code = status
    response.headers.update(location)
    return job


@router.get("", response_model=StudyList, responses=problem_responses(403, 422))
async def list_studies(
    principal: Reader,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200, description="studies per page")] = 50,
    cursor: Annotated[str | None, Query(description="the `next_cursor` of the last page")] = None,
    state: Annotated[list[State] | None, Query(description="only these states")] = None,
    client: Annotated[str | None, Query(description="admin: only this client's")] = None,
) -> StudyList:
    """The caller's studies (an admin's: everyone's), newest first, without results."""
    viewer = viewer_of(principal)
    if viewer is not None and client not in (None, viewer):
        raise Forbidden("only an admin lists another client's studies")
    page = listing.list_jobs(services, client if viewer is None else viewer, state or [],
                             limit, cursor)
    if page.next_cursor is None:
        return page
    query = {"limit": limit, "cursor": page.next_cursor, "state": state or [],
             "client": client or []}
    return page.model_copy(update={"next": f"/v1/studies?{urlencode(query, doseq=True)}"})


@router.get("/{job_id}", response_model=StudyJob, responses=problem_responses(403, 404, 422))
async def get_study(job_id: str, services: ServicesDep, principal: Reader,
                    links: LinksDep) -> StudyJob:
    """The job's state, progress, error or result; the result's links signed for a while."""
    return views.job_view(job_id, services, viewer_of(principal), links)


@router.get("/{job_id}/slices/{index}/mask.png", response_class=Response, responses=SLICE_PNG)
async def get_mask(job_id: str, index: int, services: ServicesDep,
                   principal: LinkOrReader) -> Response:
    """The slice's binary mask (0 or 255) at the slice's own size; a signed link or a key."""
    png = await views.mask_png(job_id, index, services, viewer_of(principal))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{job_id}/slices/{index}/overlay.png", response_class=Response,
            responses=SLICE_PNG)
async def get_overlay(job_id: str, index: int, services: ServicesDep,
                      principal: LinkOrReader) -> Response:
    """The slice in the bone window with lesion outlines and boxes; a signed link or a key."""
    png = await views.overlay_png(job_id, index, services, viewer_of(principal))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.delete("/{job_id}", status_code=204, responses=problem_responses(403, 404, 422))
async def delete_study(job_id: str, services: ServicesDep, principal: Deleter) -> Response:
    """Remove the job and everything stored for it."""
    await views.delete_job(job_id, services, viewer_of(principal))
    return Response(status_code=204)


def _metadata(raw: bytes | None) -> SubmissionMetadata:
    """The ``metadata`` part as the model; InvalidMetadata says which field is wrong (never
    with its value: the answer may be logged by a proxy, the value is patient data)."""
    if raw is None:
        return NO_METADATA
    try:
        return SubmissionMetadata.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'metadata'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise InvalidMetadata(f"the metadata part: {problems}") from None

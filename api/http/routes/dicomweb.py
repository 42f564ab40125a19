"""DICOMweb: STOW-RS, a study sent as DICOM instances, through the same intake as uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.dimse.stow import receive_instances, store_response
from api.http.auth import Submitter
from api.http.deps import ServicesDep
from api.http.multipart import stream_related_parts
from api.http.problems import problem_responses
from api.http.quotas import UploadQuota
from api.study.jobs import PRIORITY_RANKS

router = APIRouter(prefix="/v1/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"


class DicomJSONResponse(JSONResponse):
    """DICOM JSON (PS3.18 F.2): what the document publishes for the route's answers."""

    media_type = DICOM_JSON

_STORE_RESPONSE = {DICOM_JSON: {"schema": {
    "type": "object", "description": "Store Instances Response module (PS3.18 10.5.3) in"
    " DICOM JSON: ReferencedSOPSequence (0008,1199), FailedSOPSequence (0008,1198) with"
    " FailureReason (0008,1197), and the job's URL as RetrieveURL (0008,1190)",
}}}
STOW_BODY = {"requestBody": {"required": True, "content": {
    'multipart/related; type="application/dicom"': {"schema": {
        "type": "string", "format": "binary",
        "description": "one DICOM instance (application/dicom) a part",
    }},
}}}
STORED: dict[int | str, dict[str, Any]] = {
    200: {"description": "Every instance stored; the study queued as a job (`Location`)",
          "content": _STORE_RESPONSE},
    202: {"description": "Some instances failed (FailedSOPSequence); the study queued",
          "content": _STORE_RESPONSE},
    409: {"description": "No instance could be stored; nothing queued",
          "content": _STORE_RESPONSE},
    **problem_responses(400, 403, 413, 422, 429),
}


@router.post("/studies", status_code=200, response_class=DicomJSONResponse,
             openapi_extra=STOW_BODY, responses=STORED)
async def store_instances(
    request: Request, services: ServicesDep, principal: Submitter, _: UploadQuota,
    priority: Annotated[Literal["routine", "stat"], Query(
        description="stat: taken before every routine study waiting, as for `POST /v1/studies`",
    )] = "routine",
) -> DicomJSONResponse:
    """STOW-RS: store a CT study's instances and queue it, as `POST /v1/studies` does."""
    content_type = request.headers.get("content-type", "")

    async def write_parts(folder: Path) -> None:
        await stream_related_parts(content_type, request.stream(), folder)

    receipt = await receive_instances(write_parts, services, owner=principal.client,
                                      priority=PRIORITY_RANKS[priority])
    headers: dict[str, str] = {}
    job_url = None
    if receipt.job_id is not None:
        job_url = str(request.url_for("get_study", job_id=receipt.job_id))
        headers["Location"] = request.url_for("get_study", job_id=receipt.job_id).path
    if receipt.refusal is not None:
        # PS3.18 8.4.3's Warning header: why the study as a whole was refused.
        reason = receipt.refusal.detail.encode("ascii", "replace").decode().replace('"', "'")
        headers["Warning"] = f'299 bonemets "{reason[:500]}"'
    return DicomJSONResponse(store_response(receipt, job_url), status_code=receipt.status,
                             headers=headers)

"""A finished study as DICOM (its Segmentation and its TID 1500 Structured Report) and as a
FHIR R4 Bundle."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.http.deps import ServicesDep
from api.http.links import LinkOrReader, viewer_of
from api.http.problems import problem_responses
from api.study import fhir, reports

router = APIRouter(prefix="/v1/studies", tags=["studies"])

DICOM = "application/dicom"
DICOM_FILE: dict[int | str, dict[str, Any]] = {
    200: {"description": "A DICOM Part 10 file",
          "content": {DICOM: {"schema": {"type": "string", "format": "binary"}}}},
}
CACHE = {"Cache-Control": "private, max-age=3600"}
FHIR_BUNDLE: dict[int | str, dict[str, Any]] = {
    200: {"description": "A FHIR R4 Bundle (type collection): a DiagnosticReport, an"
          " Observation per lesion, the algorithm as a Device (docs/integration.md)",
          "content": {fhir.FHIR_JSON: {
              "schema": {"type": "object", "required": ["resourceType", "type", "entry"],
                         "properties": {"resourceType": {"type": "string", "enum": ["Bundle"]},
                                        "type": {"type": "string", "enum": ["collection"]},
                                        "entry": {"type": "array"}}},
              "example": fhir.example_bundle()}}},
}


@router.get("/{job_id}/seg.dcm", response_class=Response,
            responses={**DICOM_FILE, **problem_responses(403, 404, 409, 422)})
async def get_seg(job_id: str, services: ServicesDep, principal: LinkOrReader) -> Response:
    """The lesions as a DICOM Segmentation (404 when there is none); a signed link or a key."""
    data = await reports.seg_dicom(job_id, services, viewer_of(principal))
    return Response(data, media_type=DICOM, headers=CACHE)


@router.get("/{job_id}/sr.dcm", response_class=Response,
            responses={**DICOM_FILE, **problem_responses(403, 404, 409, 422)})
async def get_sr(job_id: str, services: ServicesDep, principal: LinkOrReader) -> Response:
    """The findings as a DICOM TID 1500 measurement report; a signed link or a key."""
    data = await reports.sr_dicom(job_id, services, viewer_of(principal))
    return Response(data, media_type=DICOM, headers=CACHE)


@router.get("/{job_id}/fhir", response_class=Response,
            responses={**FHIR_BUNDLE, **problem_responses(403, 404, 409, 422)})
async def get_fhir(job_id: str, services: ServicesDep, principal: LinkOrReader) -> Response:
    """The findings as a FHIR R4 Bundle for an EHR; a signed link or a key."""
    data = await fhir.fhir_bundle(job_id, services, viewer_of(principal))
    return Response(data, media_type=fhir.FHIR_JSON, headers=CACHE)

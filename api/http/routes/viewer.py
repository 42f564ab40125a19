"""A finished study in a browser: slices with their overlays, the lesions, two windows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from api.errors import JobNotFinished
from api.http.deps import ServicesDep
from api.http.links import LinkOrReader, LinksDep, viewer_of
from api.http.problems import problem_responses
from api.http.viewer import render_viewer, security_headers
from api.study import views

router = APIRouter(prefix="/v1/studies", tags=["studies"])

PAGE: dict[int | str, dict[str, Any]] = {
    200: {"description": "A self-contained HTML page: no script, style or image from"
          " elsewhere", "content": {"text/html": {"schema": {"type": "string"}}}},
}


@router.get("/{job_id}/viewer", response_class=HTMLResponse,
            responses={**PAGE, **problem_responses(403, 404, 409, 422)})
async def get_viewer(job_id: str, services: ServicesDep, principal: LinkOrReader,
                     links: LinksDep) -> HTMLResponse:
    """The study slice by slice with its lesion overlays, in a browser; a signed link (the
    job's `viewer_url`) or a key."""
    job = views.job_view(job_id, services, viewer_of(principal), links)
    if job.result is None:
        raise JobNotFinished(f"study job {job_id} is {job.state}; the viewer shows a result")
    page, nonce = render_viewer(job_id, job.result)
    return HTMLResponse(page, headers=security_headers(nonce, services.settings.public_url))

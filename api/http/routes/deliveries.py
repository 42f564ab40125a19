"""A finished study's results sent to the PACS again, on request."""

from __future__ import annotations

from fastapi import APIRouter

from api.http.auth import Submitter
from api.http.deps import ServicesDep
from api.http.links import viewer_of
from api.http.problems import problem_responses
from api.schemas import Delivery
from api.study import views

router = APIRouter(prefix="/v1/studies", tags=["studies"])


@router.post("/{job_id}/deliveries", status_code=202, response_model=list[Delivery],
             responses=problem_responses(401, 403, 404, 409))
async def resend(job_id: str, services: ServicesDep, principal: Submitter) -> list[Delivery]:
    """Send the study's SEG and SR again to every destination configured for its client:
    after a PACS lost them, or a delivery that failed for good. The deliveries, due now,
    follow in the job document."""
    return views.resend(job_id, services, viewer_of(principal))

"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api import metrics
from api.http.deps import ServicesDep
from api.schemas import Health
from api.study.catalog import service_readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health,
            responses={503: {"model": Health, "description": "Not ready, with the reason"}})
async def readyz(services: ServicesDep, response: Response) -> Health:
    """The job database answers; and, unless this is an API replica (whose uploads queue
    while no model answers), Triton is reachable and the model ready, with the expected
    window and threshold."""
    reason = await service_readiness(services)
    metrics.ready.set(1 if reason is None else 0)  # the probe's last word, for alerts
    if reason is None:
        return Health(status="ok")
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return Health(status="unavailable", detail=reason)

"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.http.deps import ModelDep, SettingsDep
from api.schemas import Health
from api.study.catalog import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(model: ModelDep, settings: SettingsDep) -> JSONResponse:
    """Triton is reachable and the model is ready, with the expected window and threshold."""
    reason = await readiness(model, settings)
    if reason is None:
        return JSONResponse(Health(status="ok").model_dump())
    body = Health(status="unavailable", detail=reason).model_dump()
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from api.http.deps import ModelDep, SettingsDep, StoreDep
from api.schemas import Health
from api.study.catalog import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health,
            responses={503: {"model": Health, "description": "Not ready, with the reason"}})
async def readyz(model: ModelDep, settings: SettingsDep, store: StoreDep,
                 response: Response) -> Health:
    """Triton is reachable and the model is ready, with the expected window and threshold;
    the object store answers."""
    reason = await readiness(model, settings) or await asyncio.to_thread(store.unavailable)
    if reason is None:
        return Health(status="ok")
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return Health(status="unavailable", detail=reason)

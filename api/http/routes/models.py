"""The model behind the service."""

from __future__ import annotations

from fastapi import APIRouter

from api.http.deps import ModelDep
from api.schemas import ModelOut, Problem
from api.study.catalog import model_description

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=list[ModelOut], responses={503: {"model": Problem}})
async def list_models(model: ModelDep) -> list[ModelOut]:
    """The served model: name, version, input size, window and threshold."""
    info = await model.info()
    ready = await model.ready()
    return [ModelOut.model_validate(model_description(info, ready))]

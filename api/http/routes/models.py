"""The model behind the service."""

from __future__ import annotations

from fastapi import APIRouter

from api.http.deps import ModelDep
from api.http.problems import problem_responses
from api.schemas import ModelOut
from api.study.catalog import model_description

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=list[ModelOut], responses=problem_responses(502, 503, 504))
async def list_models(model: ModelDep) -> list[ModelOut]:
    """The served model: name, version, input size, window and threshold."""
    info = await model.info()
    ready = await model.ready()
    return [model_description(info, ready)]

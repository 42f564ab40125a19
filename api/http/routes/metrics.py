"""This process's Prometheus metrics (BONEMETS_METRICS=route)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from api.http.deps import ServicesDep
from api.http.metrics import MetricsReader, exposition
from api.http.problems import problem_responses

router = APIRouter(tags=["operations"])

TEXT: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text exposition format 0.0.4",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}


@router.get("/metrics", response_class=Response, responses={**TEXT, **problem_responses(403)})
async def get_metrics(services: ServicesDep, _: MetricsReader) -> Response:
    """This process's metrics, and the job database's backlog (metrics:read)."""
    text = await asyncio.to_thread(exposition, services.jobs)  # the backlog is a query
    return Response(text, media_type=CONTENT_TYPE_PLAIN_0_0_4)

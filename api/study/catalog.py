"""What the served model is, and whether it is the one this gateway was configured for."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from api.config import Settings
from api.errors import BoneMetsError
from api.inference.contract import format_windows, parse_windows
from api.inference.protocol import ModelInfo, SegmentationModel
from api.schemas.result import ModelOut, WindowOut

if TYPE_CHECKING:
    from api.study.services import Services


def model_description(info: ModelInfo, ready: bool) -> ModelOut:
    """The model as the API describes it, in ``GET /v1/models`` and in every result."""
    return ModelOut(
        name=info.name, version=info.version, platform=info.platform,
        input_size=info.input_size,
        windows=[WindowOut(level=w.level, width=w.width) for w in info.windows],
        threshold=info.threshold, max_batch_size=info.max_batch_size, ready=ready,
    )


def mismatch(info: ModelInfo, settings: Settings) -> str | None:
    """Why the model differs from the window or threshold the settings expect, if it does."""
    if settings.window is not None and parse_windows(settings.window) != info.windows:
        return (f"model window {format_windows(info.windows)} differs from the configured"
                f" {settings.window}")
    if settings.threshold is not None and abs(settings.threshold - info.threshold) > 1e-6:
        return f"model threshold {info.threshold} differs from the configured {settings.threshold}"
    return None


async def service_readiness(services: Services) -> str | None:
    """None when this process can do its part, else why not: an API replica needs its job
    database and object store (studies queue while no model answers); a worker also needs
    the model."""
    try:
        await asyncio.to_thread(services.jobs.ping)
    except BoneMetsError as exc:
        return exc.detail
    unavailable = await asyncio.to_thread(services.store.unavailable)
    if unavailable is not None:
        return unavailable
    if services.settings.role == "api":
        return None
    return await readiness(services.model, services.settings)


async def readiness(model: SegmentationModel, settings: Settings) -> str | None:
    """None when the model is ready and as configured, else the reason it is not."""
    try:
        async with asyncio.timeout(5):
            if not await model.ready():
                return f"model {settings.model_name} is not ready"
            return mismatch(await model.info(), settings)
    except TimeoutError:
        return "the inference server did not answer within 5 s"
    except BoneMetsError as exc:
        return exc.detail

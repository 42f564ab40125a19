"""Taking a study in: parts saved to the job's folder (or to scratch, then to the bucket), zips
expanded, headers checked, job queued.

The header pass runs here, before the 202, so that a client who sent no CT (a PDF, a scout,
an MR) hears so at once with a 4xx, and nothing is queued for it. Every entrance (the upload
route, STOW-RS, the DIMSE listener) ends in :func:`receive`, so all choose the series alike.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from api.config import Settings
from api.dicom.series import CTSeries, select_ct_series
from api.dicom.sources import expand_upload, list_upload, zip_limits
from api.study.series_record import keep_series
from api.study.services import Services

log = logging.getLogger(__name__)

# Writes the upload's parts into the folder it is given; raises InvalidUpload for a bad body.
PartWriter = Callable[[Path], Awaitable[object]]
# What a caller sees of the files and the chosen series before the job is queued.
Inspector = Callable[[Sequence[Path], CTSeries | None, BaseException | None], Awaitable[None]]


@dataclass(frozen=True)
class Received:
    """A queued job, the files it was sent and the series chosen from them (their paths as
    received: in a bucket store's scratch, gone once the upload is kept)."""

    job_id: str
    files: tuple[Path, ...]
    series: CTSeries


def select_series(files: Sequence[Path], settings: Settings) -> CTSeries:
    """The series a job reads, by the service's one rule: slice limit and refused body parts.

    Intake calls it, and so does a job whose record of the choice is lost, so that both
    choose alike.
    """
    return select_ct_series(
        files, max_slices=settings.max_slices,
        refused_body_parts=settings.refused_body_part_codes,
        max_image_pixels=settings.max_image_pixels,
    )


async def receive_study(write_parts: PartWriter, services: Services, owner: str,
                        priority: int = 0) -> str:
    """Write the parts to storage, check that they hold a CT series, queue a job of ``owner``
    at ``priority``; return its id."""
    return (await receive(write_parts, services, owner, priority=priority)).job_id


async def receive(write_parts: PartWriter, services: Services, owner: str, *,
                  expand_zips: bool = True, inspect: Inspector | None = None,
                  priority: int = 0) -> Received:
    """:func:`receive_study`, telling what was received: zips expanded unless told not to
    (DICOMweb parts are DICOM instances), and ``inspect`` shown the files and the series
    chosen (or the error refusing them) while the files are still on disk."""
    job_id = uuid.uuid4().hex
    upload = await asyncio.to_thread(services.store.create, job_id)
    try:
        await write_parts(upload)
        if expand_zips:
            limits = zip_limits(services.settings.max_upload_bytes)
            files = await asyncio.to_thread(expand_upload, upload, limits)
        else:
            files = await asyncio.to_thread(list_upload, upload)
        try:
            series = await asyncio.to_thread(select_series, files, services.settings)
        except Exception as exc:
            if inspect is not None:
                await inspect(files, None, exc)
            raise
        if inspect is not None:
            await inspect(files, series, None)
        # Sent to the bucket, where there is one (on disk, the files are in place already).
        await asyncio.to_thread(services.store.keep_upload, job_id)
        # The pipeline reads this back instead of a second header pass.
        await asyncio.to_thread(keep_series, services.store, job_id, series, upload)
    except BaseException:
        # Nothing half-received is kept.
        await asyncio.to_thread(services.store.delete, job_id)
        raise
    services.jobs.create(job_id, slices_total=len(series.slices), owner=owner,
                         priority=priority)
    services.runner.submit(job_id)
    log.info("job %s queued: %d slices from %d files", job_id, len(series.slices), len(files))
    return Received(job_id, tuple(files), series)

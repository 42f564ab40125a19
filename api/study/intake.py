"""Taking a study in: parts saved to the job's folder, zips expanded, headers checked, job queued.

The header pass runs here, before the 202, so that a client who sent no CT (a PDF, a scout,
an MR) hears so at once with a 4xx, and nothing is queued for it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from api.config import Settings
from api.dicom.series import CTSeries, select_ct_series
from api.dicom.sources import expand_upload, zip_limits
from api.study.services import Services

log = logging.getLogger(__name__)

# Writes the upload's parts into the folder it is given; raises InvalidUpload for a bad body.
PartWriter = Callable[[Path], Awaitable[object]]


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


async def receive_study(write_parts: PartWriter, services: Services, owner: str) -> str:
    """Write the parts to disk, check that they hold a CT series, queue a job of ``owner``;
    return its id."""
    job_id = uuid.uuid4().hex
    upload = services.store.create(job_id)
    try:
        await write_parts(upload)
        limits = zip_limits(services.settings.max_upload_bytes)
        files = await asyncio.to_thread(expand_upload, upload, limits)
        series = await asyncio.to_thread(select_series, files, services.settings)
        # The pipeline reads this back instead of a second header pass.
        await asyncio.to_thread(services.store.write_series, job_id, series)
    except BaseException:
        # Nothing half-received is kept.
        await asyncio.to_thread(services.store.delete, job_id)
        raise
    services.jobs.create(job_id, slices_total=len(series.slices), owner=owner)
    services.runner.submit(job_id)
    log.info("job %s queued: %d slices from %d files", job_id, len(series.slices), len(files))
    return job_id

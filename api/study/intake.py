"""Taking a study in: parts saved to the job's folder, zips expanded, headers checked, job queued.

The header pass runs here, before the 202, so that a client who sent no CT (a PDF, a scout,
an MR) hears so at once with a 4xx, and nothing is queued for it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from api.dicom.series import select_ct_series
from api.dicom.sources import expand_upload, zip_limits
from api.http.deps import Services
from api.http.multipart import stream_parts

log = logging.getLogger(__name__)


async def receive_study(content_type: str, body: AsyncIterator[bytes], services: Services) -> str:
    """Stream the parts to disk, check that they hold a CT series, queue a job; return its id."""
    job_id = uuid.uuid4().hex
    upload = services.store.create(job_id)
    try:
        await stream_parts(content_type, body, upload)
        limits = zip_limits(services.settings.max_upload_bytes)
        files = await asyncio.to_thread(expand_upload, upload, limits)
        series = await asyncio.to_thread(
            select_ct_series,
            files,
            max_slices=services.settings.max_slices,
            refused_body_parts=services.settings.refused_body_part_codes,
        )
        # The pipeline reads this back instead of a second header pass.
        await asyncio.to_thread(services.store.write_series, job_id, series)
    except BaseException:
        # Nothing half-received is kept.
        await asyncio.to_thread(services.store.delete, job_id)
        raise
    services.jobs.create(job_id)
    services.runner.submit(job_id)
    log.info("job %s queued: %d slices from %d files", job_id, len(series.slices), len(files))
    return job_id


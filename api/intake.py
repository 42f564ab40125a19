"""Taking a study in: parts saved to the job's folder, zips expanded, headers checked, job queued.

The header pass runs here, before the 202, so that a client who sent no CT (a PDF, a scout,
an MR) hears so at once with a 4xx, and nothing is queued for it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from api.deps import Services
from api.dicom.series import select_ct_series
from api.dicom.sources import expand_upload
from api.errors import InvalidUpload

log = logging.getLogger(__name__)


class UploadPart(Protocol):
    """One file of a multipart upload (FastAPI's UploadFile fits)."""

    filename: str | None
    file: BinaryIO


async def receive_study(parts: Sequence[UploadPart], services: Services) -> str:
    """Save the parts, check that they hold a CT series, and queue a job; returns its id."""
    if not parts:
        raise InvalidUpload("the upload holds no files")
    job_id = uuid.uuid4().hex
    upload = services.store.create(job_id)
    try:
        await asyncio.to_thread(_save_parts, parts, upload)
        files = await asyncio.to_thread(expand_upload, upload)
        series = await asyncio.to_thread(
            select_ct_series, files, max_slices=services.settings.max_slices
        )
    except BaseException:
        # Nothing half-received is kept.
        await asyncio.to_thread(services.store.delete, job_id)
        raise
    services.jobs.create(job_id)
    services.runner.submit(job_id)
    log.info("job %s queued: %d slices from %d files", job_id, len(series.slices), len(files))
    return job_id


def _save_parts(parts: Sequence[UploadPart], upload: Path) -> None:
    """Copy each part to disk under a name of our own (client file names never name paths)."""
    for number, part in enumerate(parts, start=1):
        part.file.seek(0)
        with open(upload / f"part-{number:05d}", "wb") as out:
            shutil.copyfileobj(part.file, out, length=1 << 20)

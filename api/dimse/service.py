"""The listener run with the gateway: started in its lifespan, studies queued on its event
loop through the same intake as uploads, stopped before the job runner."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from api.dimse.listener import DicomListener
from api.errors import InvalidUpload
from api.study import intake
from api.study.jobs import PRIORITY_RANKS
from api.study.runner import job_error
from api.study.services import Services

log = logging.getLogger(__name__)


async def submit_gathered(folder: Path, owner: str, services: Services,
                          urgent: bool = False) -> str:
    """Queue the instances in ``folder`` as one study of ``owner`` (stat when ``urgent``);
    the job's id. A study with no usable series becomes a failed job with the reason, not a
    silent loss."""

    async def move_in(upload: Path) -> None:
        await asyncio.to_thread(_move_files, folder, upload)

    try:
        received = await intake.receive(move_in, services, owner, expand_zips=False,
                                        priority=PRIORITY_RANKS["stat" if urgent else "routine"],
                                        entrance="dimse")
    except InvalidUpload as exc:
        job_id = uuid.uuid4().hex
        # A job is read with its folder: an empty one, nothing to keep in it.
        await asyncio.to_thread(services.store.create, job_id)
        await asyncio.to_thread(services.store.keep_upload, job_id)
        services.jobs.create(job_id, owner=owner, error=job_error(exc))  # never claimable
        log.warning("study received by C-STORE refused as job %s: %s", job_id, exc.type_uri)
        return job_id
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    log.info("study received by C-STORE queued as job %s", received.job_id)
    return received.job_id


def _move_files(source: Path, target: Path) -> None:
    for path in sorted(source.iterdir()):
        # A move, not a rename: the scratch of a bucket store may be on another disk.
        shutil.move(path, target / path.name)


@asynccontextmanager
async def dicom_listener(services: Services) -> AsyncIterator[DicomListener | None]:
    """The DICOM listener for the block, when ``dicom_port`` is set; None otherwise."""
    if services.settings.dicom_port is None:
        yield None
        return
    loop = asyncio.get_running_loop()

    def submit(folder: Path, owner: str, urgent: bool) -> None:
        # From the gatherer's thread: the intake and the runner live on the event loop.
        asyncio.run_coroutine_threadsafe(submit_gathered(folder, owner, services, urgent),
                                         loop).result()

    listener = DicomListener(services.settings, submit)
    await asyncio.to_thread(listener.start)
    try:
        yield listener
    finally:
        await asyncio.to_thread(listener.stop)

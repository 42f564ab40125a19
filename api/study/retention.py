"""Finished studies are kept ``job_retention_h`` hours, then removed with everything stored."""

from __future__ import annotations

import asyncio
import logging
import time

from api.study.jobs import JobStore
from api.study.storage import StudyStore

log = logging.getLogger(__name__)


def sweep(jobs: JobStore, store: StudyStore, retention_h: float, now: float | None = None) -> int:
    """Delete finished jobs last updated more than ``retention_h`` hours ago; returns how many."""
    cutoff = (time.time() if now is None else now) - retention_h * 3600
    expired = jobs.expired(cutoff)
    for job_id in expired:
        store.delete(job_id)
        jobs.delete(job_id)
    if expired:
        log.info("removed %d studies older than %.0f h", len(expired), retention_h)
    return len(expired)


async def sweep_forever(jobs: JobStore, store: StudyStore, retention_h: float,
                        every_s: float = 600.0) -> None:
    while True:
        await asyncio.to_thread(sweep, jobs, store, retention_h)
        # Scratch a killed process left (a bucket store's only): it would fill the disk.
        await asyncio.to_thread(store.sweep_scratch)
        await asyncio.sleep(every_s)

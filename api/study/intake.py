"""Taking a study in: parts saved to the job's folder (or to scratch, then to the bucket), zips
expanded, headers checked, job queued.

The header pass runs here, before the 202, so that a client who sent no CT (a PDF, a scout,
an MR) hears so at once with a 4xx, and nothing is queued for it. Every entrance (the upload
route, STOW-RS, the DIMSE listener) ends in :func:`receive`, so all choose the series alike.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from api import metrics
from api.config import Settings
from api.dicom.series import CTSeries, select_ct_series
from api.dicom.sources import expand_upload, list_upload, zip_limits
from api.errors import IdempotencyKeyReused
from api.schemas.submission import NO_METADATA, SubmissionMetadata
from api.study.job_rows import IdempotencyKey, Job, priority_name
from api.study.series_record import keep_series
from api.study.services import Services

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Submission:
    """What a caller asked for besides its files: read with them, so known once they are."""

    priority: int = 0
    metadata: SubmissionMetadata = NO_METADATA
    key: IdempotencyKey | None = None  # the caller's Idempotency-Key, with the body's digest


# The ways a study comes in (a metrics label).
Entrance = Literal["upload", "stow", "dimse"]
# Writes the upload's parts into the folder it is given, and says what else the body asked
# for (None: nothing); raises InvalidUpload for a bad body.
PartWriter = Callable[[Path], Awaitable[Submission | None]]
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


def request_digest(files_digest: str, metadata: SubmissionMetadata, priority: int) -> str:
    """What an idempotent submission is compared by: its files, its metadata, its priority."""
    text = f"{files_digest}\n{metadata.model_dump_json(exclude_none=True)}\n{priority}"
    return hashlib.sha256(text.encode()).hexdigest()


class _Replayed(Exception):  # noqa: N818 - not an error: the key's job is the answer
    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


async def receive_study(write_parts: PartWriter, services: Services,
                        owner: str) -> tuple[str, bool]:
    """Write the parts to storage, check that they hold a CT series, queue a job of
    ``owner``; return its id, and whether it is an earlier job the same Idempotency-Key and
    body made (nothing new queued)."""
    try:
        return (await receive(write_parts, services, owner)).job_id, False
    except _Replayed as replayed:
        return replayed.job_id, True


async def receive(write_parts: PartWriter, services: Services, owner: str, *,
                  expand_zips: bool = True, inspect: Inspector | None = None,
                  priority: int = 0, entrance: Entrance = "upload") -> Received:
    """:func:`receive_study`, telling what was received: zips expanded unless told not to
    (DICOMweb parts are DICOM instances), and ``inspect`` shown the files and the series
    chosen (or the error refusing them) while the files are still on disk. A study at
    ``priority`` unless the body says otherwise; ``entrance`` names the way in, for the
    metrics."""
    job_id = uuid.uuid4().hex
    began = time.perf_counter()
    upload = await asyncio.to_thread(services.store.create, job_id)
    try:
        asked = await write_parts(upload) or Submission(priority=priority)
        sent_bytes = await asyncio.to_thread(_size_of, upload)
        header_began = time.perf_counter()
        if asked.metadata.callback_url is not None:  # before any work: no SSRF by the back door
            services.check_callback(asked.metadata.callback_url, owner)
        await _replay(services, owner, asked.key)
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
        header_s = time.perf_counter() - header_began
        # Sent to the bucket, where there is one (on disk, the files are in place already).
        await asyncio.to_thread(services.store.keep_upload, job_id)
        # The pipeline reads this back instead of a second header pass.
        await asyncio.to_thread(keep_series, services.store, job_id, series, upload)
    except BaseException:
        # Nothing half-received is kept.
        await asyncio.to_thread(services.store.delete, job_id)
        raise
    job = services.jobs.create(job_id, slices_total=len(series.slices), owner=owner,
                               priority=asked.priority, metadata=asked.metadata, key=asked.key)
    if job.id != job_id:  # the same key, queued by a request that ran beside this one
        await asyncio.to_thread(services.store.delete, job_id)
        _check_same(job, asked.key, services)
        raise _Replayed(job.id)
    services.runner.submit(job_id)
    _count(entrance, asked.priority, sent_bytes, header_began - began, header_s)
    log.info("job %s queued: %d slices from %d files", job_id, len(series.slices), len(files))
    return Received(job_id, tuple(files), series)


def _size_of(upload: Path) -> int:
    """Bytes under ``upload`` as written, before any zip is expanded."""
    return sum(path.stat().st_size for path in upload.rglob("*") if path.is_file())


def _count(entrance: Entrance, priority: int, sent_bytes: int, upload_s: float,
           header_s: float) -> None:
    metrics.submissions.labels(entrance, priority_name(priority)).inc()
    metrics.received_bytes.labels(entrance).inc(sent_bytes)
    metrics.stage_duration.labels("upload").observe(upload_s)
    metrics.stage_duration.labels("header").observe(header_s)


async def _replay(services: Services, owner: str, key: IdempotencyKey | None) -> None:
    """Raise _Replayed for the job ``key`` already made (IdempotencyKeyReused when it was
    made from another body). A job the service failed (5xx) is not an answer to keep: its
    key is forgotten and the study runs again."""
    since = time.time() - services.settings.idempotency_window_h * 3600
    job = await asyncio.to_thread(services.jobs.keyed, owner, key, since)
    if job is None:
        return
    _check_same(job, key, services)
    raise _Replayed(job.id)


def _check_same(job: Job, key: IdempotencyKey | None, services: Services) -> None:
    if key is not None and services.jobs.digest_of(job.id) != key.digest:
        raise IdempotencyKeyReused(
            f"this Idempotency-Key was sent with another study or metadata (job {job.id});"
            " use a new key for a new request")

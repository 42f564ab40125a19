"""One study through the stages: series -> decode -> model -> lesions -> storage.

Batches flow in order with at most ``inflight_batches`` of them decoded or at the model at
once; each batch is decoded in the process pool into a slot of the pool's shared memory
(:mod:`api.study.decode_slots`), segmented (async gRPC), then post-processed (in a thread
when it holds anything to label) while the next batches are on their way. A 1,000-slice
study is never whole in memory: only the slots of the batches in flight and the open
lesions' last masks are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import numpy.typing as npt

from api import metrics
from api.config import Settings
from api.dicom.series import CTSeries, SliceRef
from api.dicom.sources import list_upload
from api.errors import DecoderCrashed, InferenceUnavailable, ModelError
from api.inference.protocol import Segmentation, SegmentationModel
from api.study.decode_slots import DecodeSlots, SlotAddress
from api.study.decoder_pool import DecoderPool
from api.study.decoding import DecodedBatch, decode_batch
from api.study.intake import select_series
from api.study.jobs import JobStore
from api.study.results import StudyAccumulator, lesioned_slices
from api.study.series_record import keep_series, placed, stored_series
from api.study.storage import StudyStore

log = logging.getLogger(__name__)

# The job's progress is written to the database at most this often (and once at the end).
PROGRESS_EVERY_S = 0.5


class StudyPipeline:
    """Runs one job at a time per call; safe to call concurrently for different jobs."""

    def __init__(self, *, model: SegmentationModel, store: StudyStore, jobs: JobStore,
                 decoder: DecoderPool, settings: Settings) -> None:
        self.model = model
        self.store = store
        self.jobs = jobs
        self.decoder = decoder
        self.settings = settings

    async def run(self, job_id: str) -> None:
        started = time.perf_counter()
        await asyncio.to_thread(self.store.clear_outputs, job_id)
        # The decoder pool reads files by path: the upload on disk, or a scratch copy of it
        # for this run where it is in a bucket.
        fetched = self.store.local_upload(job_id)
        upload = await asyncio.to_thread(fetched.__enter__)
        try:
            await self._run(job_id, upload, started)
        finally:
            await asyncio.to_thread(fetched.__exit__, None, None, None)

    async def _run(self, job_id: str, upload: Path, started: float) -> None:
        series = await asyncio.to_thread(self._series, job_id, upload)
        read_s = time.perf_counter() - started
        stage_line(job_id, "read", read_s)
        self.jobs.start(job_id, len(series.slices))
        info = await self.model.info()
        study = StudyAccumulator(job_id, series, info, self.store,
                                 floor_mm=self.settings.reporting_floor_mm)
        at_model = BusyClock()
        size = min(self.settings.batch_size, info.max_batch_size)
        slots = self.decoder.slots(
            self.settings.inflight_batches * self.settings.concurrent_jobs, size, info.input_size
        )
        written = -PROGRESS_EVERY_S
        async for batch, segmentation in self._segmented(series, size, slots, at_model):
            lesioned = lesioned_slices(segmentation)
            if lesioned.any():  # connected components and mask writes: off the event loop
                await asyncio.to_thread(study.add_batch, batch, segmentation, lesioned)
            else:  # nothing found on these slices: bookkeeping only, not worth a thread
                study.add_batch(batch, segmentation, lesioned)
            if time.monotonic() - written >= PROGRESS_EVERY_S:
                self.jobs.progress(job_id, study.slices_done)
                written = time.monotonic()
        self.jobs.progress(job_id, study.slices_done)
        result = await asyncio.to_thread(
            study.finish, read_s, time.perf_counter() - started, at_model.busy_s()
        )
        # Batches overlap: decoding and post-processing summed over batches, the model's
        # time as the study waited on it (the result's timings say the same).
        timings = result.timings
        stage_line(job_id, "decode", timings.decode_s)
        stage_line(job_id, "inference", timings.inference_wall_s or timings.inference_s)
        stage_line(job_id, "postprocess", timings.postprocess_s)
        began = time.perf_counter()
        await asyncio.to_thread(self.store.write_result, job_id, result)
        stage_line(job_id, "write", time.perf_counter() - began)

    async def _segmented(
        self, series: CTSeries, size: int, slots: DecodeSlots, at_model: BusyClock
    ) -> AsyncIterator[tuple[DecodedBatch, Segmentation]]:
        """Decoded and segmented batches of ``size`` slices, in slice order, with a bounded
        number in flight."""
        batches = [series.slices[i:i + size] for i in range(0, len(series.slices), size)]
        pending: deque[asyncio.Task[tuple[DecodedBatch, Segmentation]]] = deque()
        try:
            for start, refs in zip(range(0, len(series.slices), size), batches, strict=True):
                pending.append(asyncio.create_task(
                    self._decode_and_segment(start, refs, slots, at_model)
                ))
                if len(pending) >= self.settings.inflight_batches:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _decode_and_segment(
        self, start: int, refs: Sequence[SliceRef], slots: DecodeSlots, at_model: BusyClock
    ) -> tuple[DecodedBatch, Segmentation]:
        slot = await slots.acquire()
        metrics.slices_in_flight.inc(len(refs))
        decodes: list[Future[DecodedBatch]] = []
        try:
            began = time.perf_counter()
            batch = await self._decoded(start, refs, slots.size, slots.address(slot), decodes)
            batch.wall_decode_s = time.perf_counter() - began
            began = time.perf_counter()
            segmentation = await self._segment_with_retry(slots.view(slot, len(refs)))
            ended = time.perf_counter()
            batch.inference_s = ended - began
            at_model.add(began, ended)
        finally:
            # A decode abandoned (the job failed or was cancelled) may still be writing.
            slots.release(slot, after=decodes[-1] if decodes else None)
            metrics.slices_in_flight.dec(len(refs))
        metrics.slices_processed.inc(len(refs))
        return batch, segmentation

    async def _decoded(
        self, start: int, refs: Sequence[SliceRef], size: int, slot: SlotAddress,
        decodes: list[Future[DecodedBatch]],
    ) -> DecodedBatch:
        """The batch decoded into ``slot`` by the process pool, tried twice if a worker dies;
        each decode submitted is appended to ``decodes``."""
        for attempt in (1, 2):
            decodes.append(self.decoder.submit(decode_batch, start, list(refs), size, slot))
            try:
                return await asyncio.wrap_future(decodes[-1])
            except BrokenProcessPool as exc:
                # The worker died under this batch; the pool replaces itself on the next
                # submit (DecoderPool), so try the batch once more before giving up on it.
                if attempt == 2:
                    raise DecoderCrashed(
                        f"a decode worker died twice on slices {start}-{start + len(refs) - 1}"
                        " (out of memory, or a file that crashes the decoder); the service "
                        "goes on: try again, or leave those files out"
                    ) from exc
                log.warning("decode worker died on slices from %d; retrying the batch", start)
        raise AssertionError("unreachable")

    async def _segment_with_retry(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        attempts = self.settings.inference_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                segmentation = await self.model.segment(hounsfield)
                _check_shapes(segmentation, hounsfield.shape)
                return segmentation
            except InferenceUnavailable:
                if attempt == attempts:
                    raise
                delay = min(2.0 ** (attempt - 1), 8.0)
                log.warning("inference unavailable (try %d of %d); again in %.0f s",
                            attempt, attempts, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _series(self, job_id: str, upload: Path) -> CTSeries:
        """The series chosen at intake; read again from the files if that record is gone."""
        cached = stored_series(self.store, job_id)
        if cached is not None:
            series = placed(cached, upload)
            if all(ref.path.is_file() for ref in series.slices):
                return series
        series = select_series(list_upload(upload), self.settings)
        keep_series(self.store, job_id, series, upload)  # overlays read it back later
        return series


def stage_line(job_id: str, stage: str, seconds: float) -> None:
    """The log's one line for a stage of a job (``stage`` and ``duration_ms`` fields), and
    the stage's histogram."""
    metrics.stage_duration.labels(stage).observe(seconds)
    duration_ms = round(seconds * 1000, 1)
    log.info("job %s %s: %.1f ms", job_id, stage, duration_ms,
             extra={"stage": stage, "duration_ms": duration_ms})


class BusyClock:
    """Wall-clock time during which at least one of several overlapping intervals was open."""

    def __init__(self) -> None:
        self._intervals: list[tuple[float, float]] = []

    def add(self, began: float, ended: float) -> None:
        self._intervals.append((began, ended))

    def busy_s(self) -> float:
        """The length of the union of the intervals added."""
        total, reach = 0.0, float("-inf")
        for began, ended in sorted(self._intervals):
            if ended > reach:
                total += ended - max(began, reach)
                reach = ended
        return total


def _check_shapes(segmentation: Segmentation, shape: tuple[int, ...]) -> None:
    n, rows, cols = shape
    if segmentation.mask.shape != (n, rows, cols):
        raise ModelError(f"mask of shape {segmentation.mask.shape}, expected {(n, rows, cols)}")
    if segmentation.probability.shape[0] != n:
        raise ModelError(f"{segmentation.probability.shape[0]} probability maps for {n} slices")

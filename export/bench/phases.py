"""The benchmark's phases, in order, each filling its part of :class:`BenchResults`.

One Triton at a time: the demo model's for (a) and (b), then the null model's for (c)
and (e), each on free ports, each stopped before the next starts, so they never compete
for the two cores.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from export.bench.gateway import Gateway, StudyRun, submit
from export.bench.report import BenchResults
from export.bench.repositories import ServedModel
from export.bench.studies import Study, model_batches
from export.bench.triton_direct import measure_direct

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What to run: sizes, repeats and measurement windows (already resolved from --quick)."""

    slices: int
    big_study_slices: int
    concurrency: tuple[int, ...]
    batch: int
    repeats: int
    warmup_s: float
    window_s: float


@dataclass(frozen=True)
class RunningTriton:
    """Where a started local Triton answers."""

    grpc_url: str
    metrics_url: str
    model: str


@contextmanager
def local_triton(served: ServedModel) -> Iterator[RunningTriton]:
    """The bundled tritonserver serving one model, on free ports, for the ``with`` block."""
    from api.tritonserver.launcher import LocalTriton, free_ports

    grpc, http, metrics = free_ports(3)
    server = LocalTriton(served.repository, grpc_port=grpc, http_port=http,
                         metrics_port=metrics, models=[served.name])
    with server:
        yield RunningTriton(server.grpc_url, server.metrics_url, served.name)


def direct_phase(triton: RunningTriton, study: Study, plan: Plan, results: BenchResults,
                 step: Callable[[str], None]) -> None:
    """(a) and (d): every concurrency level against Triton alone."""
    batches = model_batches(study.files, plan.batch)
    for concurrency in plan.concurrency:
        step(f"(a) direct, concurrency {concurrency}")
        result = measure_direct(triton.grpc_url, triton.metrics_url, triton.model, batches,
                                concurrency, warmup_s=plan.warmup_s, window_s=plan.window_s)
        log.info("direct concurrency %d: %.1f slices/s, p50 %.0f ms", concurrency,
                 result.slices_per_s, result.p50_ms)
        results.direct.append(result)


def _repeated(gateway: Gateway, study: Study, repeats: int, *,
              split_intake: bool = False) -> list[StudyRun]:
    submit(gateway, study.files)  # warm-up: spawns the decode workers, opens the channel
    return [submit(gateway, study.files, split_intake=split_intake) for _ in range(repeats)]


def gateway_phase(triton: RunningTriton, study: Study, plan: Plan, data_dir: Path,
                  results: BenchResults, step: Callable[[str], None]) -> None:
    """(b): the study through a real gateway in front of the demo model."""
    step("(b) gateway end to end")
    with Gateway(triton.grpc_url, triton.model, data_dir / "demo", batch=plan.batch) as gateway:
        results.gateway.extend(_repeated(gateway, study, plan.repeats))
    log.info("gateway: %.1f slices/s (median of %d)",
             statistics.median(run.slices_per_s for run in results.gateway), plan.repeats)


def null_phase(triton: RunningTriton, study: Study, big: Study, plan: Plan, data_dir: Path,
               results: BenchResults, step: Callable[[str], None]) -> None:
    """(c) the gateway's CPU per slice and (e) its peak memory, with the null model."""
    step("(c) gateway CPU, null model")
    with Gateway(triton.grpc_url, triton.model, data_dir / "null", batch=plan.batch) as gateway:
        results.null_gateway.extend(_repeated(gateway, study, plan.repeats, split_intake=True))
        log.info("gateway CPU: %.2f ms per slice", statistics.median(
            run.cpu_ms_per_slice for run in results.null_gateway))
        step(f"(e) {big.slices}-slice study, memory")
        results.big_study = submit(gateway, big.files, sample_memory=True)
        log.info("gateway peak RSS %.0f MB", results.big_study.peak_rss_bytes / 1e6)

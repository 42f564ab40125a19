"""The benchmark's phases, in order, each filling its part of :class:`BenchResults`.

One Triton at a time: the demo model's for (a), (b) and (b4), then the null model's for (c)
and (e), each on free ports, each stopped before the next starts, so they never compete
for the two cores. With a baseline checkout, its gateway and the current one run against
the same Triton and take turns (:func:`~export.bench.sides.interleaved`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from export.bench.checkouts import Checkout
from export.bench.concurrent import submit_concurrent
from export.bench.gateway import Gateway, submit
from export.bench.procfs import role, tree_pids
from export.bench.profile import Recorder
from export.bench.report import BenchResults
from export.bench.repositories import ServedModel
from export.bench.sides import GatewayRuns, interleaved
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
    studies_at_once: int = 4
    profile: bool = False


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


@contextmanager
def gateways(triton: RunningTriton, checkouts: dict[str, Checkout], data_dir: Path,
             batch: int) -> Iterator[dict[str, Gateway]]:
    """A started gateway per checkout, all against ``triton``, for the ``with`` block."""
    with ExitStack() as stack:
        started = {}
        for label, checkout in checkouts.items():
            gateway = Gateway(triton.grpc_url, triton.model, data_dir / label, batch=batch,
                              checkout=checkout)
            started[label] = stack.enter_context(gateway)
            log.info("%s gateway: %s", label, checkout.api_module)
        yield started


def gateway_phase(triton: RunningTriton, checkouts: dict[str, Checkout], study: Study,
                  small: list[Study], plan: Plan, data_dir: Path, runs: dict[str, GatewayRuns],
                  step: Callable[[str], None]) -> None:
    """(b) the study, and (b4) several small ones at once, through each checkout's gateway."""
    step("(b) gateway end to end")
    with gateways(triton, checkouts, data_dir / "demo", plan.batch) as started:
        for gateway in started.values():
            submit(gateway, study.files)  # warm-up: spawns the decode workers, opens the channel
        for label in interleaved(list(started), plan.repeats):
            runs[label].gateway.append(submit(started[label], study.files))
            log.info("(b) %s: %.1f slices/s", label, runs[label].gateway[-1].slices_per_s)
        step(f"(b4) {len(small)} studies at once")
        for label in interleaved(list(started), plan.repeats):
            run = submit_concurrent(started[label], [each.files for each in small])
            runs[label].concurrent.append(run)
            log.info("(b4) %s: %.1f slices/s", label, run.slices_per_s)


def null_phase(triton: RunningTriton, checkouts: dict[str, Checkout], study: Study, big: Study,
               plan: Plan, data_dir: Path, runs: dict[str, GatewayRuns],
               step: Callable[[str], None], profile_dir: Path | None = None) -> None:
    """(c) each gateway's CPU per slice (and its profile, into ``profile_dir``), (e) its peak
    memory: null model."""
    step("(c) gateway CPU, null model")
    with gateways(triton, checkouts, data_dir / "null", plan.batch) as started:
        for gateway in started.values():
            submit(gateway, study.files)
        for label in interleaved(list(started), plan.repeats):
            runs[label].null_gateway.append(submit(started[label], study.files,
                                                   split_intake=True))
            log.info("(c) %s: %.2f ms per slice", label,
                     runs[label].null_gateway[-1].cpu_ms_per_slice)
        if profile_dir is not None:
            step("(c) profiles")
            for label in interleaved(list(started), 1):
                runs[label].profile = profiled(started[label], study, profile_dir / label,
                                               runs=max(plan.repeats, 3))
                log.info("py-spy's raw samples of the %s gateway: %s", label, profile_dir / label)
        step(f"(e) {big.slices}-slice study, memory")
        for label in interleaved(list(started), 1):
            memory = submit(started[label], big.files, sample_memory=True)
            runs[label].big_study = memory
            log.info("(e) %s: peak RSS %.0f MB", label, memory.peak_rss_bytes / 1e6)


def profiled(gateway: Gateway, study: Study, folder: Path,
             runs: int) -> dict[str, dict[str, int]]:
    """Samples by stage of the uvicorn process and of its decode workers (summed) over
    ``runs`` more runs of the study (not counted in (c): py-spy pauses what it samples)."""
    workers = [pid for pid in tree_pids(gateway.pid)
               if role(pid, gateway.pid) == "decode workers"]
    with Recorder({"uvicorn": [gateway.pid], "decode workers": workers}, folder) as recorder:
        for _ in range(runs):
            submit(gateway, study.files)
    return recorder.counts

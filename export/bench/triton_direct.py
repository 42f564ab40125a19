"""Triton alone: throughput and latency at a fixed concurrency, the way perf_analyzer measures.

``concurrency`` requests are kept outstanding (gRPC, binary int16 HU batches); after a
warm-up, completions inside a fixed measurement window are counted. The window is
stretched until it holds ``min_requests`` completions, so slow models still give a
percentile. Bytes are the tensor bytes actually sent and received; Triton's own counters
(``nv_inference_count``, compute time) and the loopback interface's byte counters are read
around the run as a cross-check.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from api.inference.contract import INPUT_NAME, MASK_OUTPUT, PROBABILITY_OUTPUT


@dataclass(frozen=True)
class Completion:
    """One answered request: when it was sent and answered, its slices and bytes."""

    sent: float
    answered: float
    slices: int
    bytes_in: int
    bytes_out: int
    message_out: int  # the whole response message, framing of the tensors included


@dataclass(frozen=True)
class MeasurementWindow:
    """Measurement window bounds (perf_counter seconds)."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class DirectResult:
    """Throughput, latency and bytes of one concurrency level."""

    concurrency: int
    batch: int
    window_s: float
    requests: int
    slices: int
    slices_per_s: float
    p50_ms: float
    p99_ms: float
    bytes_in_per_slice: float
    bytes_out_per_slice: float
    response_bytes_per_slice: float
    checks: dict[str, float] = field(default_factory=dict)


def summarize(completions: list[Completion], window: MeasurementWindow, concurrency: int,
              batch: int) -> DirectResult:
    """Figures from the completions that fell inside ``window`` (pure; no Triton needed)."""
    inside = [c for c in completions if window.start <= c.answered <= window.end]
    if not inside:
        raise ValueError("no request completed inside the measurement window")
    slices = sum(c.slices for c in inside)
    latencies = np.array([(c.answered - c.sent) * 1000.0 for c in inside])
    return DirectResult(
        concurrency=concurrency,
        batch=batch,
        window_s=window.seconds,
        requests=len(inside),
        slices=slices,
        slices_per_s=slices / window.seconds,
        p50_ms=float(np.percentile(latencies, 50)),
        p99_ms=float(np.percentile(latencies, 99)),
        bytes_in_per_slice=sum(c.bytes_in for c in inside) / slices,
        bytes_out_per_slice=sum(c.bytes_out for c in inside) / slices,
        response_bytes_per_slice=sum(c.message_out for c in inside) / slices,
    )


async def _infer(client: Any, model: str, hounsfield: npt.NDArray[np.int16]) -> Completion:
    from tritonclient.grpc import InferInput, InferRequestedOutput

    request = InferInput(INPUT_NAME, list(hounsfield.shape), "INT16")
    request.set_data_from_numpy(hounsfield)
    outputs = [InferRequestedOutput(MASK_OUTPUT), InferRequestedOutput(PROBABILITY_OUTPUT)]
    sent = time.perf_counter()
    result = await client.infer(model, [request], outputs=outputs, client_timeout=300.0)
    answered = time.perf_counter()
    response = result.get_response()
    received = sum(len(raw) for raw in response.raw_output_contents)
    mask, probability = result.as_numpy(MASK_OUTPUT), result.as_numpy(PROBABILITY_OUTPUT)
    if mask is None or probability is None or mask.shape[0] != len(hounsfield):
        raise RuntimeError(f"Triton answered without the outputs for {len(hounsfield)} slices")
    return Completion(sent, answered, len(hounsfield), hounsfield.nbytes, received,
                      response.ByteSize())


async def _load(url: str, model: str, batches: list[npt.NDArray[np.int16]], concurrency: int,
                warmup_s: float, window_s: float, min_requests: int,
                ) -> tuple[list[Completion], MeasurementWindow]:
    from tritonclient.grpc.aio import InferenceServerClient

    completions: list[Completion] = []
    stopping = asyncio.Event()
    client = InferenceServerClient(url)

    async def keep_busy(offset: int) -> None:
        index = offset
        while not stopping.is_set():
            completions.append(await _infer(client, model, batches[index % len(batches)]))
            index += concurrency

    workers = [asyncio.create_task(keep_busy(k)) for k in range(concurrency)]
    try:
        await asyncio.sleep(warmup_s)
        start = time.perf_counter()
        # Ten times the window at most: a model so slow would never finish the benchmark.
        while time.perf_counter() - start < 10 * window_s:
            elapsed = time.perf_counter() - start
            done = sum(1 for c in completions if c.answered >= start)
            if elapsed >= window_s and done >= min_requests:
                break
            await asyncio.sleep(0.05)
        window = MeasurementWindow(start, time.perf_counter())
        stopping.set()
        await asyncio.gather(*workers)  # outstanding requests finish; they fall after the window
    finally:
        for worker in workers:
            worker.cancel()
        await client.close()
    return completions, window


def triton_counters(metrics_url: str, model: str) -> dict[str, float]:
    """Triton's cumulative per-model counters (Prometheus text), summed over versions."""
    with urllib.request.urlopen(metrics_url, timeout=5.0) as answer:
        text = answer.read().decode("utf-8")
    return parse_counters(text, model)


def parse_counters(text: str, model: str) -> dict[str, float]:
    """``nv_inference_*`` values whose ``model`` label is ``model``, summed by metric name."""
    counters: dict[str, float] = {}
    label = f'model="{model}"'
    for line in text.splitlines():
        if line.startswith("nv_inference_") and label in line:
            name = line.split("{", 1)[0]
            counters[name] = counters.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return counters


def loopback_bytes() -> int | None:
    """Bytes the loopback interface has carried (each byte once), from /proc/net/dev."""
    try:
        with open("/proc/net/dev", encoding="ascii") as table:
            for line in table:
                name, _, values = line.partition(":")
                if name.strip() == "lo":
                    return int(values.split()[8])  # transmit bytes
    except OSError:
        return None
    return None


def measure_direct(url: str, metrics_url: str, model: str, batches: list[npt.NDArray[np.int16]],
                   concurrency: int, *, warmup_s: float, window_s: float,
                   min_requests: int = 8) -> DirectResult:
    """One concurrency level against a running Triton, with the cross-checks filled in."""
    before, lo_before = triton_counters(metrics_url, model), loopback_bytes()
    completions, window = asyncio.run(
        _load(url, model, batches, concurrency, warmup_s, window_s, min_requests)
    )
    after, lo_after = triton_counters(metrics_url, model), loopback_bytes()
    result = summarize(completions, window, concurrency, len(batches[0]))
    sent_slices = sum(c.slices for c in completions)
    counted = after.get("nv_inference_count", 0.0) - before.get("nv_inference_count", 0.0)
    compute_us = (after.get("nv_inference_compute_infer_duration_us", 0.0)
                  - before.get("nv_inference_compute_infer_duration_us", 0.0))
    result.checks = {"client_slices_all": float(sent_slices), "triton_inference_count": counted}
    if counted > 0:
        result.checks["triton_compute_ms_per_request"] = compute_us / 1000.0 / len(completions)
    if lo_before is not None and lo_after is not None:
        result.checks["loopback_bytes_per_slice"] = (lo_after - lo_before) / sent_slices
    return result

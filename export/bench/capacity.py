"""``bonemets capacity``: how many API pods, worker cores and GPUs a daily load needs, on paper.

Not a measurement: arithmetic over measured inputs (the gateway's CPU per slice and bytes
per slice from ``bonemets bench``; the network's compute per slice, counted here on the
model itself) and published ones (GPUs' peak FP16 tensor throughput, from their datasheets),
with the assumptions printed beside the table. docs/scaling.md shows its output.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

EPILOG = """examples:
  bonemets capacity                                   # the defaults: docs/benchmarks.md's run
  bonemets capacity --bench bench.json --out capacity.json
  bonemets capacity --studies 100,1000,10000 --slices 500 --gpu-efficiency 0.2
"""

# docs/benchmarks.md, `bonemets bench` of 2026-12-08 on 2 EPYC cores: (c) 2.25 ms of gateway
# CPU per slice, 1.27 of it until the upload is accepted (the API's share), 0.98 after (the
# worker's: decode, gRPC, lesions, masks), means over its runs; (d) 0.524 MB sent to Triton
# per slice; (a) 25.6 slices/s from the demo model on the CPU Triton of those 2 cores.
MEASURED = {"api_ms_per_slice": 1.27, "worker_ms_per_slice": 0.98, "mb_per_slice": 0.524,
            "cpu_triton_slices_per_s_per_core": 25.6 / 2,
            "source": "docs/benchmarks.md, bonemets bench, 2026-12-08, 2-core AMD EPYC"}
# Dense FP16 tensor-core peaks (without sparsity), from NVIDIA's datasheets.
GPUS = {
    "L4": (121.0, "NVIDIA L4 datasheet: 242 TFLOPS FP16 with sparsity, half dense"),
    "A100": (312.0, "NVIDIA A100 datasheet: 312 TFLOPS FP16 tensor, dense"),
    "H100 SXM": (989.0, "NVIDIA H100 datasheet: 1,979 TFLOPS FP16 with sparsity, half dense"),
}
# Networks whose compute per slice is counted: the served demo and one of the paper's size
# (the paper's DeepLabV3+ backbone is not named; ResNet-50 at full width is its usual one).
NETWORKS = {"demo": (18, 0.25), "R50": (50, 1.0)}  # ResNet-18 at width 0.25; ResNet-50


@dataclass(frozen=True)
class Load:
    studies_per_day: int
    slices_per_study: int
    busy_hours: float  # the day's studies arrive within these hours
    burst: float  # the busiest minutes against the busy hours' mean rate

    @property
    def peak_slices_per_s(self) -> float:
        return self.studies_per_day * self.slices_per_study / (self.busy_hours * 3600) * self.burst


@dataclass(frozen=True)
class Sizing:
    studies_per_day: int
    peak_slices_per_s: float
    api_pods: int
    worker_cores: int
    cpu_triton_cores: int  # the demo model on CPU Triton instead of a GPU
    gpus: dict[str, int]  # per network, on the reference GPU
    network_mbit_s: float  # to Triton at the peak
    stored_tb: float  # uploads kept for the retention period


def gflop_per_slice(depth: int, width: float) -> float:
    """Forward FLOPs of one 512x512 slice through the DeepLabV3+ of ``export.model``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from export.model import ModelConfig, build_model

    model = build_model(ModelConfig(depth=depth, width=width, in_channels=2)).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 2, 512, 512))
    return float(counter.get_total_flops()) / 1e9


def gpu_slices_per_s(gflop: float, tflops: float, efficiency: float) -> float:
    return tflops * 1e12 * efficiency / (gflop * 1e9)


def size(load: Load, measured: dict[str, Any], gpu_rate: dict[str, float],
         utilisation: float, retention_days: float) -> Sizing:
    """What ``load`` needs: pods and cores kept at ``utilisation`` at the peak, two of each
    at least (one may be drained or fail), GPUs by the networks' ``gpu_rate``."""
    peak = load.peak_slices_per_s
    api_cores = peak * measured["api_ms_per_slice"] / 1000 / utilisation
    worker_cores = peak * measured["worker_ms_per_slice"] / 1000 / utilisation
    # A study must finish in a minute: with 4 batches of 8 in flight a worker core keeps the
    # GPU fed for one study; 500 slices at the worker's CPU cost take 1.4 s on one core.
    return Sizing(
        studies_per_day=load.studies_per_day, peak_slices_per_s=round(peak, 1),
        api_pods=max(2, math.ceil(api_cores)), worker_cores=max(2, math.ceil(worker_cores)),
        cpu_triton_cores=math.ceil(peak / measured["cpu_triton_slices_per_s_per_core"]
                                   / utilisation),
        gpus={name: max(1, math.ceil(peak / rate / utilisation))
              for name, rate in gpu_rate.items()},
        network_mbit_s=round(peak * measured["mb_per_slice"] * 8, 1),
        stored_tb=round(load.studies_per_day * load.slices_per_study * measured["mb_per_slice"]
                        * retention_days / 1e6, 2),
    )


def measured_from(bench: Path | None) -> dict[str, Any]:
    """The gateway's figures from a ``bonemets bench --out`` file, or docs/benchmarks.md's."""
    if bench is None:
        return dict(MEASURED)
    document = json.loads(bench.read_text())
    runs = document.get("null_gateway") or []
    if not runs or any(run.get("intake_cpu_s") is None for run in runs):
        raise ValueError(f"{bench}: no gateway CPU runs with the intake split ((c) of bench)")
    slices = sum(run["slices"] for run in runs)
    api_ms = 1000 * sum(run["intake_cpu_s"] for run in runs) / slices
    total_ms = 1000 * sum(run["cpu_s"] for run in runs) / slices
    cores = document["machine"]["cores"]
    return {"api_ms_per_slice": api_ms, "worker_ms_per_slice": total_ms - api_ms,
            "mb_per_slice": document["figures"]["mb_in_per_slice"],
            "cpu_triton_slices_per_s_per_core":
                document["figures"]["direct_best_slices_per_s"] / cores,
            "source": f"{bench}, bonemets bench, {document['date']}"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "capacity", help="size API pods, worker cores and GPUs for a daily load, on paper",
        description="Print how many API pods, worker cores and GPUs serve a number of studies"
                    " a day, from the gateway's measured CPU and bytes per slice, the"
                    " networks' FLOPs (counted on the model) and GPUs' datasheet peaks; write"
                    " the table and every input as JSON with --out.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bench", type=Path, help="a `bonemets bench --out` file (default:"
                        " the figures of docs/benchmarks.md)")
    parser.add_argument("--studies", default="100,1000,10000", help="studies a day, comma-"
                        "separated (default 100,1000,10000)")
    parser.add_argument("--slices", type=int, default=500, help="slices a study (default 500)")
    parser.add_argument("--busy-hours", type=float, default=10.0,
                        help="hours a day the studies arrive in (default 10)")
    parser.add_argument("--burst", type=float, default=3.0,
                        help="busiest minutes over the busy hours' mean rate (default 3)")
    parser.add_argument("--gpu-efficiency", type=float, default=0.25,
                        help="share of a GPU's FP16 peak a segmentation network reaches"
                             " (default 0.25)")
    parser.add_argument("--utilisation", type=float, default=0.7,
                        help="how busy a core or GPU may be at the peak (default 0.7)")
    parser.add_argument("--retention-days", type=float, default=7.0,
                        help="days uploads are kept (BONEMETS_JOB_RETENTION_H / 24)")
    parser.add_argument("--out", type=Path, help="write the inputs and the table as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    measured = measured_from(args.bench)
    flops = {name: gflop_per_slice(*shape) for name, shape in NETWORKS.items()}
    rates = {f"{network} on {gpu}": gpu_slices_per_s(flops[network], GPUS[gpu][0],
                                                     args.gpu_efficiency)
             for network in NETWORKS for gpu in ("L4", "H100 SXM")}
    loads = [Load(int(n), args.slices, args.busy_hours, args.burst)
             for n in args.studies.split(",")]
    rows = [size(load, measured, rates, args.utilisation, args.retention_days) for load in loads]
    print(table(rows, rates))
    print(f"\ninputs: {measured['source']}; API {measured['api_ms_per_slice']:.2f} ms and worker"
          f" {measured['worker_ms_per_slice']:.2f} ms of CPU, {measured['mb_per_slice']:.3f} MB"
          " to Triton per slice; " + "; ".join(f"{n}: {g:.1f} GFLOP/slice"
                                               for n, g in flops.items()))
    if args.out is not None:
        args.out.write_text(json.dumps({
            "measured": measured, "gflop_per_slice": flops, "gpus": GPUS,
            "gpu_slices_per_s": rates, "assumptions": {
                key: getattr(args, key) for key in ("slices", "busy_hours", "burst",
                                                    "gpu_efficiency", "utilisation",
                                                    "retention_days")},
            "sizing": [asdict(row) for row in rows]}, indent=2))
    return 0


def table(rows: list[Sizing], rates: dict[str, float]) -> str:
    gpu_names = list(rates)
    head = ["studies/day", "peak slices/s", "API pods", "worker cores",
            "or CPU Triton cores (demo)",
            *[f"GPUs: {name} ({rates[name]:,.0f}/s)" for name in gpu_names],
            "to Triton, Mbit/s", "uploads kept, TB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{row.studies_per_day:,}", f"{row.peak_slices_per_s:,.1f}", str(row.api_pods),
                 str(row.worker_cores), str(row.cpu_triton_cores),
                 *[str(row.gpus[name]) for name in gpu_names],
                 f"{row.network_mbit_s:,.0f}", f"{row.stored_tb:,.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

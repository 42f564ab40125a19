"""The demo network on a GPU, in PyTorch: slices/s at 512x512 for a few batch sizes (issue 24).

Prepared for the machines lent now and then with an NVIDIA GPU (CUDA torch, no TensorRT,
no network): ``python -m export.bench.gpu --out gpu.json`` takes a minute or two. It times
the demo architecture (random weights: the compute does not depend on them) in FP16 on
CUDA, after a warm-up, synchronising before each clock read. ``--device cpu`` runs the same
code in FP32 on the CPU, to check the script where no GPU is. Triton on the GPU fed by the
gateway is not measured here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

SIZE = 512
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.json"


def demo_network() -> Any:
    """The demo architecture with random weights, in eval mode."""
    import torch

    from export.model import ModelConfig, build_model

    architecture = json.loads(DEMO_CONFIG.read_text(encoding="utf-8"))["model"]
    names = ("depth", "width", "norm", "output_stride", "in_channels")
    torch.manual_seed(0)
    config = ModelConfig(**{key: architecture[key] for key in names if key in architecture})
    return build_model(config).eval(), config.in_channels


def time_batches(device: str, batches: list[int], iterations: int) -> list[dict[str, Any]]:
    """Slices/s and ms per batch of the network for each batch size."""
    import torch

    network, channels = demo_network()
    half = device.startswith("cuda")
    network = network.to(device).half() if half else network.to(device)

    def sync() -> None:
        if half:
            torch.cuda.synchronize()

    rows = []
    with torch.inference_mode():
        for batch in batches:
            inputs = torch.rand(batch, channels, SIZE, SIZE, device=device,
                                dtype=torch.float16 if half else torch.float32)
            for _ in range(3):  # warm-up: cuDNN picks its algorithms on the first calls
                network(inputs)
            sync()
            began = time.perf_counter()
            for _ in range(iterations):
                network(inputs)
            sync()
            elapsed = time.perf_counter() - began
            rows.append({"batch": batch, "iterations": iterations,
                         "ms_per_batch": 1000 * elapsed / iterations,
                         "slices_per_s": batch * iterations / elapsed})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (FP16) or cpu (FP32)")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes (default 1,8,32)")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per batch size")
    parser.add_argument("--out", type=Path, default=Path("gpu.json"))
    args = parser.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing measured (try --device cpu to check the script)")
        return 2
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    rows = time_batches(args.device, [int(b) for b in args.batches.split(",")], args.iterations)
    document = {"device": name, "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%dT%H:%M%z"), "size": SIZE, "timings": rows}
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    for row in rows:
        print(f"{name}: batch {row['batch']}: {row['slices_per_s']:.1f} slices/s, "
              f"{row['ms_per_batch']:.2f} ms per batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

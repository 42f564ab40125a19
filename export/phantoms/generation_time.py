"""CPU time to make a training phantom, as the demo draws them, with and without randomise.

    python -m export.phantoms.generation_time --seeds 60

Training phantoms have 12 slices and 3 lesions; the default ones use the demo's osteoporotic
marrow range (70-270 HU), the randomised ones draw their own. Seeds alternate between the two
so that a busy machine slows both alike; CPU time, not wall time, is what is compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from export.phantoms.kernels import noise_bank
from export.phantoms.phantom import make_phantom
from export.phantoms.spec import KERNELS, sample_spec

LOOKS: dict[str, dict[str, Any]] = {"default": {"marrow_hu": (70.0, 270.0)},
                                    "randomised": {"randomise": True}}


def measure(seeds: range) -> dict[str, list[float]]:
    """CPU seconds per phantom, per look."""
    for kernel in KERNELS:
        noise_bank(kernel)  # made once per process, as in each training worker
    cpu: dict[str, list[float]] = {name: [] for name in LOOKS}
    for seed in seeds:
        for name, extra in LOOKS.items():
            start = time.process_time()
            make_phantom(sample_spec(seed, slices=12, n_lesions=3, **extra))
            cpu[name].append(time.process_time() - start)
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.phantoms.generation_time",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="example:\n  python -m export.phantoms.generation_time --seeds 60",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=60, help="phantom seeds 1..N (default 60)")
    args = parser.parse_args(argv)
    cpu = measure(range(1, args.seeds + 1))
    for name, seconds in cpu.items():
        print(f"{name}: mean {statistics.mean(seconds):.3f} s, median "
              f"{statistics.median(seconds):.3f} s, max {max(seconds):.3f} s CPU per phantom")
    ratio = statistics.mean(cpu["randomised"]) / statistics.mean(cpu["default"])
    print(f"randomised / default (means): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

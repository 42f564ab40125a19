"""(b4): several studies posted to one gateway at once, timed and metered together."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from export.bench.gateway import Gateway, Measured, _post_study
from export.bench.procfs import CpuMeter


@dataclass(frozen=True)
class ConcurrentRun(Measured):
    """Studies sent at the same moment: from the first byte sent to the last result."""

    studies: int


def submit_concurrent(gateway: Gateway, studies: list[tuple[Path, ...]],
                      wait_s: float = 600.0) -> ConcurrentRun:
    """POST every study at once, one thread each; the aggregate rate over all of them."""
    jobs: list[dict[str, object]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(len(studies) + 1)

    def post(files: tuple[Path, ...]) -> None:
        start.wait()
        try:
            jobs.append(_post_study(gateway, files, wait_s))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=post, args=(files,), name=f"study-{index}")
               for index, files in enumerate(studies)]
    for thread in threads:
        thread.start()
    meter = CpuMeter(gateway.pid)
    meter.start()
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    cpu = meter.stop()  # the jobs are kept, as submit() keeps its own (see there)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(studies)} studies failed") from failures[0]
    return ConcurrentRun(studies=len(studies), slices=sum(len(files) for files in studies),
                         wall_s=wall, cpu_s=cpu)

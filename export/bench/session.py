"""One benchmark run, start to end, under a tqdm bar that advances once per phase."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from export.bench.phases import Plan, direct_phase, gateway_phase, local_triton, null_phase
from export.bench.report import BenchResults, Machine
from export.bench.repositories import demo_model, null_model
from export.bench.studies import Study, cached_study

STUDY_SPACING_MM = 1.25
BIG_STUDY_SPACING_MM = 0.625


def _stepper(bar: tqdm) -> Callable[[str], None]:
    first = [True]

    def step(name: str) -> None:
        # Each call closes the phase before it: the bar counts finished phases.
        if not first[0]:
            bar.update()
        first[0] = False
        bar.set_description(name)

    return step


def run_benchmark(plan: Plan, repository: Path, cache: Path, *, command: str,
                  date: str) -> BenchResults:
    """Every phase of the benchmark, in order; returns the filled results."""
    cache.mkdir(parents=True, exist_ok=True)
    machine = Machine.here()  # before anything starts: the load average of the machine itself
    phases = 7 + len(plan.concurrency)
    with logging_redirect_tqdm(), tqdm(total=phases, unit="phase") as bar, \
            tempfile.TemporaryDirectory(prefix="bonemets-bench-data-") as data:
        step = _stepper(bar)
        step("studies")
        study = cached_study(cache, plan.slices, spacing_mm=STUDY_SPACING_MM)
        big = cached_study(cache, plan.big_study_slices, spacing_mm=BIG_STUDY_SPACING_MM)
        step("models")
        demo, null = demo_model(repository, cache), null_model(cache)
        results = BenchResults(
            command=command, date=date, machine=machine,
            settings={"slices": plan.slices, "big_study_slices": plan.big_study_slices,
                      "concurrency": ",".join(map(str, plan.concurrency)), "batch": plan.batch,
                      "repeats": plan.repeats, "warmup_s": plan.warmup_s,
                      "window_s": plan.window_s},
            models={"demo": demo.description, "null": null.description},
            studies={"study": _describe(study), "large study": _describe(big)},
        )
        step("Triton, demo model")
        with local_triton(demo) as triton:
            direct_phase(triton, study, plan, results, step)
            gateway_phase(triton, study, plan, Path(data), results, step)
        step("Triton, null model")
        with local_triton(null) as triton:
            null_phase(triton, study, big, plan, Path(data), results, step)
        bar.update()
    return results


def _describe(study: Study) -> str:
    return f"{study.slices} slices, 512x512, {study.slice_spacing_mm:g} mm, {study.source}"

"""One benchmark run, start to end, under a tqdm bar that advances once per phase."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from export.bench.checkouts import Checkout, baseline_checkout, current_checkout
from export.bench.phases import Plan, direct_phase, gateway_phase, local_triton, null_phase
from export.bench.report import BenchResults, Machine
from export.bench.repositories import demo_model, null_model
from export.bench.sides import GatewayRuns
from export.bench.studies import Study, cached_study

STUDY_SPACING_MM = 1.25
SMALL_STUDY_SLICES = 50  # (b4): this many slices in each of the studies posted at once
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


def _checkouts(cache: Path, baseline: str | None) -> dict[str, Checkout]:
    """The checkouts to measure, the baseline first (it goes first in the first round)."""
    current = current_checkout()
    return {"baseline": baseline_checkout(baseline, cache), "current": current} \
        if baseline is not None else {"current": current}


def run_benchmark(plan: Plan, repository: Path, cache: Path, *, command: str,
                  date: str, baseline: str | None = None) -> BenchResults:
    """Every phase of the benchmark, in order; returns the filled results."""
    cache.mkdir(parents=True, exist_ok=True)
    machine = Machine.here()  # before anything starts: the load average of the machine itself
    phases = 9 + len(plan.concurrency) + plan.profile
    with logging_redirect_tqdm(), tqdm(total=phases, unit="phase") as bar, \
            tempfile.TemporaryDirectory(prefix="bonemets-bench-data-", dir=cache) as data:
        step = _stepper(bar)
        step("checkouts")
        checkouts = _checkouts(cache, baseline)
        step("studies")
        study = cached_study(cache, plan.slices, spacing_mm=STUDY_SPACING_MM)
        big = cached_study(cache, plan.big_study_slices, spacing_mm=BIG_STUDY_SPACING_MM)
        small = [cached_study(cache, SMALL_STUDY_SLICES, spacing_mm=STUDY_SPACING_MM, seed=seed)
                 for seed in range(1, plan.studies_at_once + 1)]
        step("models")
        demo, null = demo_model(repository, cache), null_model(cache)
        results = BenchResults(
            command=command, date=date, machine=machine,
            settings={"slices": plan.slices, "big_study_slices": plan.big_study_slices,
                      "concurrency": ",".join(map(str, plan.concurrency)), "batch": plan.batch,
                      "repeats": plan.repeats, "warmup_s": plan.warmup_s,
                      "window_s": plan.window_s, "studies_at_once": plan.studies_at_once,
                      "baseline": baseline},
            models={"demo": demo.description, "null": null.description},
            studies={"study": _describe(study), "large study": _describe(big),
                     f"{len(small)} small studies": _describe(small[0])},
            checkouts={label: checkout.describe() for label, checkout in checkouts.items()},
        )
        runs = {label: GatewayRuns() for label in checkouts}
        step("Triton, demo model")
        with local_triton(demo) as triton:
            direct_phase(triton, study, plan, results, step)
            gateway_phase(triton, checkouts, study, small, plan, Path(data), runs, step)
        step("Triton, null model")
        with local_triton(null) as triton:
            null_phase(triton, checkouts, study, big, plan, Path(data), runs, step,
                       profile_dir=cache / "profiles" if plan.profile else None)
        bar.update()
    _fill(results, runs)
    return results


def _fill(results: BenchResults, runs: dict[str, GatewayRuns]) -> None:
    current = runs["current"]
    results.gateway, results.null_gateway = current.gateway, current.null_gateway
    results.big_study, results.concurrent = current.big_study, current.concurrent
    results.profile = current.profile
    results.baseline = runs.get("baseline")


def _describe(study: Study) -> str:
    return f"{study.slices} slices, 512x512, {study.slice_spacing_mm:g} mm, {study.source}"

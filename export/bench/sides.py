"""Side by side: the current checkout's gateway figures beside a baseline's, and their ratio.

Pure code over measured runs, so it is tested without a gateway. The order the two
sides take turns in is :func:`interleaved`: ABAB..., flipped every repeat, so that a drift
of the machine (another job starting, a CPU warming) falls on both alike.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from export.bench.concurrent import ConcurrentRun
from export.bench.gateway import StudyRun

MB = 1_000_000
SIDES = ("baseline", "current")

# figure key, label, digits: the rows of the side-by-side table, in order
COMPARED: tuple[tuple[str, str, int], ...] = (
    ("gateway_slices_per_s", "(b) gateway end to end, slices/s", 1),
    ("gateway_efficiency", "(b)/(a)", 2),
    ("concurrent_slices_per_s", "(b4) {studies} studies at once, slices/s", 1),
    ("concurrent_efficiency", "(b4)/(a)", 2),
    ("cpu_ms_per_slice", "(c) gateway CPU per slice, ms", 2),
    ("cpu_ms_uvicorn", "(c) uvicorn process, ms per slice", 2),
    ("cpu_ms_workers", "(c) decode workers, ms per slice", 2),
    ("cpu_ms_intake", "(c) intake (until accepted), ms per slice", 2),
    ("peak_rss_mb", "(e) peak RSS, {big}-slice study, MB", 0),
)


@dataclass
class GatewayRuns:
    """Every run of one checkout's gateway."""

    gateway: list[StudyRun] = field(default_factory=list)
    null_gateway: list[StudyRun] = field(default_factory=list)
    big_study: StudyRun | None = None
    concurrent: list[ConcurrentRun] = field(default_factory=list)
    profile: dict[str, dict[str, int]] = field(default_factory=dict)  # process -> stage -> n

    def per_run(self) -> dict[str, list[float]]:
        """The figures measured run by run, in the order the runs were taken."""
        null = self.null_gateway
        totals = [run.cpu_ms_per_slice for run in null]
        uvicorn = [run.cpu_gateway_process_s * 1000 / run.slices for run in null]
        return {
            "gateway_slices_per_s": [run.slices_per_s for run in self.gateway],
            "concurrent_slices_per_s": [run.slices_per_s for run in self.concurrent],
            "cpu_ms_per_slice": totals,
            "cpu_ms_uvicorn": uvicorn,
            "cpu_ms_workers": [total - own for total, own in zip(totals, uvicorn, strict=True)],
            "cpu_ms_intake": [run.intake_cpu_s * 1000 / run.slices for run in null
                              if run.intake_cpu_s is not None],
        }

    def figures(self, direct_best: float | None) -> dict[str, float | None]:
        """This side's gateway figures; the efficiencies divide by (a)'s best rate."""
        runs = self.per_run()
        gateway = _median(runs["gateway_slices_per_s"])
        together = _median(runs["concurrent_slices_per_s"])
        total = _median(runs["cpu_ms_per_slice"])
        uvicorn = _median(runs["cpu_ms_uvicorn"])
        intakes = runs["cpu_ms_intake"]
        return {
            "gateway_slices_per_s": gateway,
            "gateway_efficiency": _ratio(gateway, direct_best),
            "concurrent_slices_per_s": together,
            "concurrent_efficiency": _ratio(together, direct_best),
            "cpu_ms_per_slice": total,
            "cpu_ms_uvicorn": uvicorn,
            "cpu_ms_workers": None if total is None or uvicorn is None else total - uvicorn,
            "cpu_ms_intake": _median(intakes),
            "peak_rss_mb": self.big_study.peak_rss_bytes / MB if self.big_study else None,
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def interleaved(labels: Sequence[str], repeats: int) -> list[str]:
    """The order of ``repeats`` rounds over ``labels``, every other round reversed."""
    order: list[str] = []
    for round_ in range(repeats):
        order.extend(labels if round_ % 2 == 0 else reversed(labels))
    return order


def ratios(current: dict[str, float | None],
           baseline: dict[str, float | None]) -> dict[str, float | None]:
    """current / baseline for every figure both have (None where either is missing or 0)."""
    return {key: _ratio(current.get(key), baseline.get(key)) for key in current}


# The efficiencies divide both sides by the same (a): their ratios are the rates'.
SAME_RATIO = {"gateway_efficiency": "gateway_slices_per_s",
              "concurrent_efficiency": "concurrent_slices_per_s"}


def run_by_run(current: GatewayRuns, baseline: GatewayRuns) -> dict[str, tuple[float, float]]:
    """The lowest and highest current/baseline over the runs taken in turn (the k-th run
    of one side with the k-th of the other): how far one pair of runs moves the ratio."""
    mine, theirs = current.per_run(), baseline.per_run()
    spans = {}
    for key, values in mine.items():
        pairs = [a / b for a, b in zip(values, theirs.get(key, []), strict=False) if b]
        if pairs:
            spans[key] = (min(pairs), max(pairs))
    spans.update({key: spans[same] for key, same in SAME_RATIO.items() if same in spans})
    return spans


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _span(span: tuple[float, float] | None) -> str:
    return "-" if span is None else f"{span[0]:.2f}–{span[1]:.2f}"


def comparison_rows(current: dict[str, float | None], baseline: dict[str, float | None], *,
                    studies: int, big: int | str,
                    spans: dict[str, tuple[float, float]] | None = None,
                    ) -> list[tuple[str, str, str, str, str]]:
    """(figure, baseline, current, current/baseline, its run-by-run range) rows of the
    side-by-side table."""
    ratio = ratios(current, baseline)
    spans = spans or {}
    return [(label.format(studies=studies, big=big), _cell(baseline.get(key), digits),
             _cell(current.get(key), digits), _cell(ratio.get(key), 2), _span(spans.get(key)))
            for key, label, digits in COMPARED]


def _percent(part: int, whole: int, cpu_ms: float | None) -> str:
    if not whole:
        return "-"
    share = part / whole
    return f"{100 * share:.0f} %" + ("" if cpu_ms is None else f" ({share * cpu_ms:.2f} ms)")


def profile_rows(profiles: dict[str, dict[str, dict[str, int]]],
                 cpu_ms: dict[tuple[str, str], float | None] | None = None
                 ) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Headers and rows of the where-the-time-goes table: a column per side and process,
    a row per stage, each cell that stage's share of the process's samples, and with
    ``cpu_ms`` ((side, process) -> CPU ms per slice measured in (c)) that share of it."""
    cpu = cpu_ms or {}
    columns = [(side, process) for side in (*SIDES, *sorted(set(profiles) - set(SIDES)))
               if side in profiles for process in profiles[side]]
    headers = ("stage", *(f"{side}: {process}" for side, process in columns))
    totals = {column: sum(profiles[column[0]][column[1]].values()) for column in columns}
    stages: list[str] = []
    for side, process in columns:
        stages += [name for name in profiles[side][process] if name not in stages]
    rows = [(stage, *(_percent(profiles[side][process].get(stage, 0), totals[(side, process)],
                               cpu.get((side, process))) for side, process in columns))
            for stage in stages]
    rows.append(("samples", *(str(totals[column]) for column in columns)))
    return headers, rows

"""The benchmark's figures: the printed table, the JSON document and docs/benchmarks.md.

Everything here is pure formatting of a :class:`BenchResults`, so it is tested without a
Triton. Sizes are decimal: 1 MB = 10^6 bytes.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from export.bench.concurrent import ConcurrentRun
from export.bench.gateway import StudyRun
from export.bench.sides import GatewayRuns, comparison_rows, run_by_run
from export.bench.triton_direct import DirectResult

MB = 1_000_000

# name, what is compared, limit, True when the measured value must stay at or above it
TARGETS: tuple[tuple[str, str, float, bool], ...] = (
    ("gateway_efficiency", "(b)/(a): end-to-end over direct Triton throughput", 0.95, True),
    ("concurrent_efficiency", "(b4)/(a): {studies} studies at once over direct Triton",
     0.9, True),
    ("cpu_ms_per_slice", "(c) gateway CPU per 512x512 slice, ms", 2.0, False),
    ("mb_in_per_slice", "(d) MB sent to Triton per slice", 0.6, False),
    ("mb_out_per_slice", "(d) MB received from Triton per slice", 0.1, False),
    ("peak_rss_mb", "(e) gateway peak RSS, {big}-slice study, MB", 600.0, False),
)
# Against a baseline measured in the same run (issue 24): the same names, as current/baseline.
RATIO_TARGETS: tuple[tuple[str, str, float, bool], ...] = (
    ("cpu_ms_per_slice", "(c) gateway CPU per slice, current/baseline", 0.25, False),
    ("peak_rss_mb", "(e) peak RSS, current/baseline", 1.0, False),
)


@dataclass
class Machine:
    """Where the figures were measured."""

    cpu: str
    cores: int
    ram_gb: float
    gpu: str
    load_average: tuple[float, float, float]
    python: str

    @classmethod
    def here(cls) -> Machine:
        cpu = "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
            kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                       .splitlines() if line.startswith("MemTotal:"))
        except (OSError, StopIteration):
            kib = 0
        gpu = "NVIDIA device present" if Path("/dev/nvidia0").exists() else "none"
        return cls(cpu=cpu, cores=len(os.sched_getaffinity(0)), ram_gb=round(kib / 1024**2, 1),
                   gpu=gpu, load_average=os.getloadavg(), python=platform.python_version())


@dataclass
class BenchResults:
    """Every measured figure of one run, plus what it ran on."""

    command: str
    date: str
    machine: Machine
    settings: dict[str, Any]
    models: dict[str, str]
    studies: dict[str, str]
    direct: list[DirectResult] = field(default_factory=list)
    gateway: list[StudyRun] = field(default_factory=list)
    null_gateway: list[StudyRun] = field(default_factory=list)
    big_study: StudyRun | None = None
    concurrent: list[ConcurrentRun] = field(default_factory=list)
    profile: dict[str, dict[str, int]] = field(default_factory=dict)
    baseline: GatewayRuns | None = None  # the same runs of the --baseline checkout
    checkouts: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def current(self) -> GatewayRuns:
        """The current checkout's runs (this object's own fields)."""
        return GatewayRuns(self.gateway, self.null_gateway, self.big_study, self.concurrent,
                           self.profile)

    def profiles(self) -> dict[str, dict[str, dict[str, int]]]:
        """Samples by stage, by process, by checkout (those profiled)."""
        sides = {"baseline": self.baseline.profile if self.baseline else {},
                 "current": self.profile}
        return {side: profile for side, profile in sides.items() if profile}

    def profile_cpu_ms(self) -> dict[tuple[str, str], float | None]:
        """(c)'s CPU ms per slice of each profiled role: the uvicorn process's, the decode
        workers' together."""
        sides = {"current": self.figures(), "baseline": self.baseline_figures() or {}}
        return {(side, process): figures.get(key) for side, figures in sides.items()
                for process, key in (("uvicorn", "cpu_ms_uvicorn"),
                                     ("decode workers", "cpu_ms_workers"))}

    def direct_best(self) -> float | None:
        return max((run.slices_per_s for run in self.direct), default=None)

    def figures(self) -> dict[str, float | None]:
        """The headline figures of the current checkout (None: not measured)."""
        first = self.direct[0] if self.direct else None
        return {
            "direct_best_slices_per_s": self.direct_best(),
            **self.current.figures(self.direct_best()),
            "mb_in_per_slice": first.bytes_in_per_slice / MB if first else None,
            "mb_out_per_slice": first.bytes_out_per_slice / MB if first else None,
        }

    def baseline_figures(self) -> dict[str, float | None] | None:
        return self.baseline.figures(self.direct_best()) if self.baseline else None

    def comparison(self) -> list[tuple[str, str, str, str, str]]:
        """The side-by-side rows (empty without a baseline)."""
        baseline = self.baseline_figures()
        if baseline is None or self.baseline is None:
            return []
        return comparison_rows(self.figures(), baseline, studies=self._studies_at_once(),
                               big=self._big_label(),
                               spans=run_by_run(self.current, self.baseline))

    def _studies_at_once(self) -> int:
        return self.concurrent[0].studies if self.concurrent else 4

    def _big_label(self) -> int | str:
        return self.big_study.slices if self.big_study is not None else "large"

    def targets(self) -> list[dict[str, Any]]:
        """Each target with its measured value and whether it passes (None: not measured)."""
        figures, baseline = self.figures(), self.baseline_figures()
        measured = [(target, figures.get(target[0])) for target in TARGETS]
        if baseline is not None:
            measured += [(target, _divide(figures.get(target[0]), baseline.get(target[0])))
                         for target in RATIO_TARGETS]
        rows = []
        for (name, template, limit, at_least), value in measured:
            label = template.format(big=self._big_label(), studies=self._studies_at_once())
            passed = None if value is None else (value >= limit if at_least else value <= limit)
            rows.append({"name": name, "label": label, "limit": limit,
                         "comparison": ">=" if at_least else "<=", "measured": value,
                         "passed": passed})
        return rows

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready document: raw runs, headline figures and targets."""
        document = asdict(self)
        document["figures"] = self.figures()
        document["baseline_figures"] = self.baseline_figures()
        document["comparison"] = [
            dict(zip(("figure", "baseline", "current", "ratio", "ratio_run_by_run"), row,
                     strict=True)) for row in self.comparison()]
        document["targets"] = self.targets()
        return document


def _divide(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "not measured"}[passed]


def _runs_text(runs: list[StudyRun], attribute: str, digits: int, unit: str) -> str:
    """The median of the runs with its unit, then every run."""
    values = [getattr(run, attribute) for run in runs]
    if not values:
        return "-"
    median = f"{_number(statistics.median(values), digits)} {unit}"
    if len(values) == 1:
        return median
    return f"{median} (runs: {', '.join(_number(v, digits) for v in values)})"


def figure_rows(results: BenchResults) -> list[tuple[str, str]]:
    """(what, value) rows of the headline table."""
    rows: list[tuple[str, str]] = []
    for run in results.direct:
        rows.append((f"(a) Triton direct, concurrency {run.concurrency}, batch {run.batch}",
                     f"{run.slices_per_s:.1f} slices/s; p50 {run.p50_ms:.0f} ms, "
                     f"p99 {run.p99_ms:.0f} ms ({run.requests} requests in {run.window_s:.1f} s)"))
    figures = results.figures()
    rows.append(("(b) gateway end to end, upload to result",
                 _runs_text(results.gateway, "slices_per_s", 1, "slices/s")))
    rows.append(("(b)/(a) against the best concurrency", _number(figures["gateway_efficiency"], 2)))
    for together in results.concurrent:
        rows.append((f"(b4) {together.studies} studies of {together.slices // together.studies} "
                     f"slices at once", f"{together.slices_per_s:.1f} slices/s together "
                     f"({together.cpu_ms_per_slice:.2f} ms CPU per slice)"))
    rows.append(("(b4)/(a) against the best concurrency",
                 _number(figures["concurrent_efficiency"], 2)))
    rows.append(("(c) gateway CPU per slice (null model)",
                 _runs_text(results.null_gateway, "cpu_ms_per_slice", 2, "ms")))
    if results.null_gateway:
        own = statistics.median(run.cpu_gateway_process_s * 1000 / run.slices
                                for run in results.null_gateway)
        total = statistics.median(run.cpu_ms_per_slice for run in results.null_gateway)
        rows.append(("(c) of which uvicorn process / decode workers",
                     f"{own:.2f} ms / {total - own:.2f} ms"))
        intakes = [run.intake_cpu_s * 1000 / run.slices for run in results.null_gateway
                   if run.intake_cpu_s is not None]
        if intakes:
            intake = statistics.median(intakes)
            rows.append(("(c) of which until the upload is accepted / after",
                         f"{intake:.2f} ms / {total - intake:.2f} ms"))
    if results.direct:
        first = results.direct[0]
        checks = first.checks
        lo = checks.get("loopback_bytes_per_slice")
        rows.append(("(d) sent to / received from Triton per slice",
                     f"{first.bytes_in_per_slice / MB:.3f} MB / "
                     f"{first.bytes_out_per_slice / MB:.3f} MB (whole response message "
                     f"{first.response_bytes_per_slice / MB:.3f} MB)"))
        rows.append(("(d) cross-check: Triton inference_count vs slices sent",
                     f"{checks.get('triton_inference_count', 0):.0f} vs "
                     f"{checks.get('client_slices_all', 0):.0f}; loopback "
                     f"{_number(lo / MB if lo else None, 3)} MB per slice both ways"))
    big = results.big_study
    if big is not None:
        pss = _number(big.peak_pss_bytes / MB if big.peak_pss_bytes else None, 0)
        roles = ", ".join(f"{name} {value / MB:.0f}"
                          for name, value in sorted(big.peak_rss_by_role.items()))
        rows.append((f"(e) gateway peak memory, {big.slices}-slice study",
                     f"RSS {big.peak_rss_bytes / MB:.0f} MB (PSS {pss} MB), "
                     f"{big.start_rss_bytes / MB:.0f} MB before the upload"))
        rows.append(("(e) RSS at the peak by process, MB",
                     f"{roles}; study at {big.slices_per_s:.1f} slices/s"))
    return rows


def format_table(rows: list[tuple[str, str]], headers: tuple[str, str]) -> str:
    """A plain-text two-column table, the first column padded."""
    width = max(len(headers[0]), *(len(name) for name, _ in rows)) if rows else len(headers[0])
    lines = [f"{headers[0]:<{width}}  {headers[1]}", f"{'-' * width}  {'-' * len(headers[1])}"]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def format_rows(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """A plain-text table of any number of columns, each padded to its widest cell."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, tuple("-" * width for width in widths), *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def target_rows(results: BenchResults) -> list[tuple[str, str]]:
    """(target, 'measured -> verdict') rows."""
    return [(f"{row['label']} {row['comparison']} {row['limit']:g}",
             f"{_number(row['measured'], 3)} -> {_verdict(row['passed'])}")
            for row in results.targets()]

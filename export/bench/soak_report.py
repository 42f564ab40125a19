"""The soak's figures: percentiles, the memory slope, the verdicts, the table and the page.

Pure functions over what :mod:`export.bench.soak` measured, so that they are tested alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from export.packaging.tensorrt_report import SECTION_BEGIN as TENSORRT_BEGIN
from export.packaging.tensorrt_report import marked_section, write_marked_section

SLOPE_WINDOW_S = 240.0  # the memory slope is fitted over the load's last 4 minutes
SECTION_BEGIN = "<!-- soak: written by `bonemets soak --update-docs`; bench keeps it -->"
SECTION_END = "<!-- /soak -->"


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, value)`` samples, in value per minute."""
    if len(samples) < 3:
        return None
    count = len(samples)
    mean_t = sum(t for t, _ in samples) / count
    mean_v = sum(v for _, v in samples) / count
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return None
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in samples) / spread


def slope_window(samples: Sequence[tuple[float, float]], load_end_s: float,
                 window_s: float = SLOPE_WINDOW_S) -> list[tuple[float, float]]:
    """The samples of the load's last ``window_s`` seconds (all of a shorter run's but its
    first fifth, the warm-up, when the run is shorter than the window)."""
    start = load_end_s - window_s if load_end_s > window_s else load_end_s * 0.2
    return [(t, v) for t, v in samples if start <= t <= load_end_s]


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(what, measured, passed) for each of the soak's conditions."""
    load, memory, cleanup = results["load"], results["memory"], results["cleanup"]
    slope = memory["gateway_slope_mb_per_min"]
    bound = memory["bound_mb_per_min"]
    return [
        ("errors = 0", f"{load['failures']} of {load['requests']} requests", load["failures"] == 0),
        ("studies finished", f"{load['studies_succeeded']}", load["studies_succeeded"] > 0),
        (f"gateway RSS slope <= {bound:g} MB/min",
         "not enough samples" if slope is None else f"{slope:+.2f} MB/min",
         slope is not None and slope <= bound),
        ("no study file left after deletion", f"{cleanup['files_left']} files",
         cleanup["files_left"] == 0),
    ]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def figure_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) of every figure, for the printed table and the page."""
    settings, load = results["settings"], results["load"]
    baseline, memory, cleanup = results["baseline"], results["memory"], results["cleanup"]
    return [
        ("load", f"{settings['users']} users for {settings['duration_s']} s, think "
                 f"{settings['think']} s, {settings['slices']}-slice studies "
                 f"({settings['size']} px)"),
        ("baseline: one study alone, upload to result",
         f"median {_seconds(baseline['median_s'])} (runs: "
         + ", ".join(f"{run:.1f}" for run in baseline["runs_s"]) + ")"),
        ("studies through (succeeded / failed)",
         f"{load['studies_succeeded']} / {load['studies_failed']}"),
        ("requests (failed)", f"{load['requests']} ({load['failures']})"),
        ("upload to result under load, p50 / p95 / max",
         f"{_seconds(load['p50_s'])} / {_seconds(load['p95_s'])} / {_seconds(load['max_s'])}"),
        ("p95 under load / baseline median", "-" if load["p95_s"] is None or not
         baseline["median_s"] else f"{load['p95_s'] / baseline['median_s']:.1f}x"),
        ("gateway RSS start / peak / end",
         f"{memory['gateway_start_mb']:.0f} / {memory['gateway_peak_mb']:.0f} / "
         f"{memory['gateway_end_mb']:.0f} MB"),
        (f"gateway RSS slope over the load's last {memory['slope_window_s']:.0f} s",
         "-" if memory["gateway_slope_mb_per_min"] is None
         else f"{memory['gateway_slope_mb_per_min']:+.2f} MB/min "
              f"({memory['slope_samples']} samples every {memory['interval_s']:g} s)"),
        ("decode workers RSS start / end",
         f"{memory['workers_start_mb']:.0f} / {memory['workers_end_mb']:.0f} MB"),
        ("studies left by users and deleted after the run", f"{cleanup['left_over_deleted']}"),
        ("files left under the data dir", f"{cleanup['files_left']}"),
    ]


def format_table(rows: Sequence[tuple[str, ...]], headers: tuple[str, ...]) -> str:
    """A plain-text table, every column but the last padded."""
    widths = [max(len(str(row[column])) for row in [headers, *rows])
              for column in range(len(headers) - 1)]
    lines = []
    for row in [headers, tuple("-" * len(cell) for cell in headers), *rows]:
        padded = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*padded, str(row[-1])]))
    return "\n".join(lines)


def _markdown_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def soak_markdown(results: dict[str, Any], note: str = "") -> str:
    """The soak's section of docs/benchmarks.md."""
    machine = results["machine"]
    checks = [(what, measured, "pass" if passed else "FAIL")
              for what, measured, passed in verdicts(results)]
    return f"""## Soak: {results['settings']['users']} uploaders for \
{results['settings']['duration_s'] / 60:g} minutes

Command: `{results['command']}`

Date: {results['date']}. Machine: {machine['cores']} cores ({machine['cpu']}), \
{machine['ram_gb']} GB RAM, GPU: {machine['gpu']}; load average when the run began: \
{', '.join(f'{value:.2f}' for value in machine['load_average'])}, when it ended: \
{', '.join(f'{value:.2f}' for value in machine.get('load_average_end', ()))}. \
Model: {results['settings']['model']}.{(' ' + note) if note else ''}

The local default service (`bonemets serve`: the gateway, its local Triton, SQLite, the local
disk) on free ports with a fresh data directory, and locust users of
`deploy/load/locustfile.py` (upload a phantom study as files or a zip, poll once a second,
fetch masks and overlays, sometimes the SEG, SR and FHIR, delete, pause). The users share
one API key where they stand for separate clients: its limit of studies in flight is set to
{results['settings'].get('client_max_inflight', '-')} (the gateway's default is 4). The
baseline is measured in the same run, before the load: the same studies one at a time, alone.

{_markdown_table(("Measured", "Value"), figure_rows(results))}

{_markdown_table(("Condition", "Measured", "Verdict"), checks)}
"""


def soak_section(text: str) -> str | None:
    """The soak's section of a page, markers included, or None where it has none."""
    return marked_section(text, SECTION_BEGIN, SECTION_END)


def write_soak_section(path: Path, section: str) -> None:
    """Put ``section`` between the soak's markers in ``path``, replacing an earlier one; a
    new one goes before the GPU section, where bench's rewrite keeps it."""
    write_marked_section(path, section, SECTION_BEGIN, SECTION_END, before=TENSORRT_BEGIN)

"""The evaluation's files: ``metrics.json``, ``metrics.md``, ``froc.png`` and ``pr.png``, and
with a gallery ``misses.png`` and ``false-positives.png``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from export.evaluation.gallery import Gallery
from export.evaluation.mimics import mimics_markdown
from export.evaluation.run import Evaluation

__all__ = [
    "format_markdown_table",
    "metrics_markdown",
    "per_study_markdown",
    "plot_curves",
    "write_report",
]

METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
FROC_PNG = "froc.png"
PR_PNG = "pr.png"
_LEVELS = (("per_slice", "per slice (2D components)"), ("lesion", "lesion-wise (3D)"))
_UNITS = {"per_slice": "components", "lesion": "lesions"}


def write_report(
    evaluation: Evaluation,
    out_dir: Path,
    *,
    per_study: bool = False,
    gallery: Gallery | None = None,
) -> list[Path]:
    """Write the four files (six with a ``gallery``) into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / METRICS_JSON, out_dir / METRICS_MD, out_dir / FROC_PNG, out_dir / PR_PNG]
    text = json.dumps(evaluation.to_json(), indent=2, allow_nan=False) + "\n"
    written[0].write_text(text, encoding="utf-8")
    markdown = metrics_markdown(evaluation)
    if evaluation.normal_variants is not None:
        markdown += "\n" + mimics_markdown(evaluation.normal_variants)
    if per_study:
        markdown += "\n" + per_study_markdown(evaluation.per_study)
    written[1].write_text(markdown, encoding="utf-8")
    plot_curves(evaluation.metrics, froc_path=written[2], pr_path=written[3])
    if gallery is not None:
        written += gallery.write(out_dir)
    return written


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cell(value: float | None, numerator: int | None = None, denominator: int | None = None) -> str:
    if value is None or numerator is None:
        return _value(value)
    return f"{value:.3f} ({numerator}/{denominator})"


def format_markdown_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table, one row per named
    :meth:`~export.evaluation.metrics.SliceMetricsAccumulator.result`."""
    header = (
        "| run | studies | slice sensitivity | slice PPV | lesion sensitivity | lesion PPV"
        " | FP / scan | Dice (pooled) | Dice (mean) |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for name, result in results.items():
        per_slice, lesion, dice = result["per_slice"], result["lesion"], result["dice"]
        cells = [
            name,
            str(result["studies"]),
            _cell(per_slice["sensitivity"], per_slice["detected"], per_slice["truth"]),
            _cell(per_slice["ppv"], per_slice["true_predicted"], per_slice["predicted"]),
            _cell(lesion["sensitivity"], lesion["detected"], lesion["truth"]),
            _cell(lesion["ppv"], lesion["true_predicted"], lesion["predicted"]),
            _cell(lesion["false_positives_per_scan"]),
            _cell(dice["pooled"]),
            _cell(dice["mean_per_study"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    studies = metrics["studies"]
    rows = []
    for level, title in _LEVELS:
        tally, unit = metrics[level], _UNITS[level]
        rows += [
            (
                f"sensitivity, {title}",
                _value(tally["sensitivity"]),
                f"{tally['detected']} of {tally['truth']} reference {unit} detected",
            ),
            (
                f"PPV, {title}",
                _value(tally["ppv"]),
                f"{tally['true_predicted']} of {tally['predicted']} predicted {unit} true",
            ),
            (
                f"false positives per scan, {title}",
                _value(tally["false_positives_per_scan"]),
                f"{tally['false_predicted']} false {unit} in {studies} scans",
            ),
        ]
    dice = metrics["dice"]
    defined = sum(1 for row in dice["per_study"] if row["dice"] is not None)
    rows += [
        ("Dice, pooled voxels", _value(dice["pooled"]), f"{studies} scans"),
        (
            "Dice, mean per scan",
            _value(dice["mean_per_study"]),
            f"{defined} scans with reference or predicted lesions",
        ),
    ]
    return rows


def metrics_markdown(evaluation: Evaluation) -> str:
    """A markdown report: what was evaluated, then a metric / value / n table."""
    metrics, model = evaluation.metrics, evaluation.model
    labelled = sum(1 for row in evaluation.per_study if row["labelled"])
    lines = [
        "# Evaluation",
        "",
        f"- model: `{model.get('source') or model.get('name', '')}` "
        f"(version {model.get('version') or 'n/a'}, {model.get('platform', '')}, "
        f"threshold {model.get('threshold')}, windows {', '.join(model.get('windows', []))})",
        f"- data: `{evaluation.data}`: {metrics['studies']} studies ({labelled} with reference "
        f"labels, the others counted as negative), {metrics['slices']} slices",
        f"- match: a detection is true when it and a reference lesion {_rule_words(metrics)}; "
        f"components are {metrics['connectivity']}-connected in plane{_dropped(metrics)}",
        f"- reporting floor: {evaluation.reporting_floor_mm:g} mm (predicted lesions whose"
        " longest axial diameter is below it are not counted, as the gateway does not report"
        " them; 0: every finding)",
        "",
        "| metric | value | n |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {n} |" for name, value, n in _metric_rows(metrics)]
    lines += ["", format_markdown_table({str(evaluation.data): metrics})]
    return "\n".join(lines)


def _dropped(metrics: Mapping[str, Any]) -> str:
    pixels = int(metrics["min_pixels"])
    return f", predicted ones under {pixels} pixels dropped" if pixels > 1 else ""


def _rule_words(metrics: Mapping[str, Any]) -> str:
    rule = str(metrics["rule"])
    if rule.startswith("overlap"):
        return f"share at least {rule.split('>=')[1].strip()} (voxels, lesion-wise)"
    return f"have {rule} (and share a pixel)"


def per_study_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per study: reference and detected lesions, false positives, Dice."""
    lines = [
        "| study | labelled | slices | true lesions | detected | predicted lesions "
        "| false positive lesions | predicted 2D components | Dice |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['study']} | {'yes' if row['labelled'] else 'no'} | {row['slices']} "
            f"| {row['truth_lesions']} | {row['detected_lesions']} | {row['predicted_lesions']} "
            f"| {row['false_positive_lesions']} | {row['predicted_components']} "
            f"| {_value(row['dice'])} |"
        )
    return "\n".join(lines) + "\n"


def _points(curve: Sequence[Mapping[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    kept = [p for p in curve if p[x] is not None and p[y] is not None]
    return [float(p[x]) for p in kept], [float(p[y]) for p in kept]


_FIGURES = (
    ("false_positives_per_scan", "sensitivity", "false positives per scan", "sensitivity", "FROC"),
    ("sensitivity", "ppv", "recall (sensitivity)", "precision (PPV)", "precision-recall"),
)


def plot_curves(metrics: Mapping[str, Any], *, froc_path: Path, pr_path: Path) -> None:
    """FROC (sensitivity vs false positives per scan) and precision-recall, both levels."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display
    for path, figure in zip((froc_path, pr_path), _FIGURES, strict=True):
        _plot_one(metrics, path, *figure)


def _why_empty(metrics: Mapping[str, Any]) -> str:
    if metrics["lesion"]["truth"] == 0:
        return "no reference lesions (all scans negative):\nsensitivity is undefined"
    return "no detections: precision is undefined"


def _plot_one(
    metrics: Mapping[str, Any], path: Path, x: str, y: str, xlabel: str, ylabel: str, title: str
) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=100)
    plotted = False
    for level, label in _LEVELS:
        xs, ys = _points(metrics[level]["curve"], x, y)
        if not xs:
            continue
        if x == "false_positives_per_scan":
            xs, ys = [0.0, *xs], [0.0, *ys]  # nothing is kept above the highest score
        (line,) = axes.plot(xs, ys, marker=".", drawstyle="steps-post", label=label)
        # The last point keeps every detection: the model's own operating threshold.
        axes.plot(xs[-1:], ys[-1:], "o", color=line.get_color(), markerfacecolor="none",
                  markersize=10)
        plotted = True
    if plotted:
        axes.legend(loc="best")
    else:
        axes.text(0.5, 0.5, _why_empty(metrics), ha="center", va="center",
                  transform=axes.transAxes)
    axes.set(xlabel=xlabel, ylabel=ylabel, ylim=(-0.02, 1.02),
             title=f"{title} ({metrics['rule']}; circle: operating point)")
    if x != "false_positives_per_scan":
        axes.set_xlim(-0.02, 1.02)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)

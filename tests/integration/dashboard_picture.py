"""A picture of the Grafana dashboard without a Grafana (none installs here): each panel of
deploy/grafana/bonemets.json at its place in the grid, its queries' answers from a real
Prometheus drawn as Grafana's time series would be. Made by the monitoring test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GRID_COLUMNS = 24
ROW_INCHES = 0.42  # one grid unit of height
WIDTH_INCHES = 16.0
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLOURS = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff9830", "#f2495c", "#b877d9", "#5794f2")


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format, filled in."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def draw(panels: list[dict[str, Any]], answers: dict[str, list[dict[str, Any]]],
         path: Path) -> None:
    """``answers``: 'panel title/refId' -> the query_range result (a list of series)."""
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(WIDTH_INCHES, height * ROW_INCHES), facecolor=BACKGROUND)
    for panel in panels:
        x, y, w, h = (panel["gridPos"][k] for k in ("x", "y", "w", "h"))
        box = [x / GRID_COLUMNS + 0.004, 1 - (y + h) / height + 0.006,
               w / GRID_COLUMNS - 0.008, h / height - 0.012]
        if panel["type"] == "row":
            figure.text(box[0], box[1] + box[3] / 2, panel["title"], color=TEXT, fontsize=11,
                        fontweight="bold", va="center")
            continue
        axes = figure.add_axes((box[0] + 0.06 * box[2], box[1] + 0.14 * box[3],
                                box[2] * 0.9, box[3] * 0.72))
        _panel(axes, panel, answers)
    figure.savefig(path, dpi=80, facecolor=BACKGROUND)
    plt.close(figure)


def _panel(axes: Any, panel: dict[str, Any], answers: dict[str, list[dict[str, Any]]]) -> None:
    axes.set_facecolor(PANEL)
    axes.set_title(panel["title"], color=TEXT, fontsize=9, loc="left")
    axes.tick_params(colors=TEXT, labelsize=7)
    axes.grid(color=GRID, linewidth=0.5)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    drawn = 0
    for target in panel.get("targets", ()):
        for series in answers.get(f"{panel['title']}/{target['refId']}", []):
            times = [float(t) for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            start = times[0]
            axes.plot([t - start for t in times], values, linewidth=1.4,
                      color=COLOURS[drawn % len(COLOURS)],
                      label=legend(target.get("legendFormat", ""), series["metric"]))
            drawn += 1
    axes.set_xlabel("seconds", color=TEXT, fontsize=7)
    if drawn:
        axes.legend(fontsize=6, facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT,
                    loc="upper left")
    else:
        axes.text(0.5, 0.5, "No data", color=TEXT, ha="center", va="center",
                  transform=axes.transAxes, fontsize=9)

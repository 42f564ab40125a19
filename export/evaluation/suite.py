"""The test suite of a model recipe: four evaluation sets, one or more training runs, targets.

Issue 25's targets are measured on sets drawn by seeds that no choice of the recipe has
seen: default phantoms, osteoporotic phantoms, phantoms with normal variants, and the real
trunk series of the corpus. Each set is evaluated for every model given (the runs of one
recipe with different training seeds), and every figure is reported with its run-to-run
spread (max - min over the runs): a difference between recipes smaller than the spread is
not a result. A target counts as met only when every run meets it.

The sets and targets live in a JSON file (``export/configs/suite.json``), so what was
measured is written down beside the figures.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.evaluation.data import Study

# What a target may name: a level's figure, or the worst study's false lesions.
FIGURES = {
    "per_slice.sensitivity": "sensitivity, per slice",
    "per_slice.ppv": "PPV, per slice",
    "lesion.sensitivity": "sensitivity, per lesion",
    "lesion.ppv": "PPV, per lesion",
    "lesion.false_positives_per_scan": "false lesions per scan",
    "lesion.max_false_per_study": "false lesions, worst study",
}
COMPARISONS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    figure: str
    comparison: str
    value: float

    def holds(self, measured: float | None) -> bool:
        return measured is not None and COMPARISONS[self.comparison](measured, self.value)

    def __str__(self) -> str:
        return f"{self.comparison} {self.value:g}"


@dataclass(frozen=True)
class SuiteSet:
    """One evaluation set: phantom seeds (with spec overrides) or DICOM study folders."""

    name: str
    seeds: range | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    folders: tuple[Path, ...] = ()
    targets: tuple[Target, ...] = ()

    def size(self) -> int:
        return len(self.seeds) if self.seeds is not None else len(self.folders)

    def studies(self) -> Iterator[Study]:
        from export.evaluation.data import folder_studies, phantom_studies

        if self.seeds is not None:
            yield from phantom_studies(self.seeds, **self.overrides)
        for folder in self.folders:
            yield from folder_studies(folder)


def load_suite(path: Path, *, studies: int | None = None) -> list[SuiteSet]:
    """The sets of a suite file; ``studies`` keeps only the first N seeds of each phantom set.
    Relative study folders are read from the checkout the file sits in (``export/configs``)."""
    content = json.loads(path.read_text())
    root = path.resolve().parent.parent.parent
    sets = []
    for entry in content["sets"]:
        seeds = None
        if "phantoms" in entry:
            first, last = (int(x) for x in entry["phantoms"])
            seeds = range(first, last + 1 if studies is None else min(last + 1, first + studies))
        targets = []
        for name, (comparison, value) in entry.get("targets", {}).items():
            if name not in FIGURES or comparison not in COMPARISONS:
                raise ValueError(
                    f"{path}: unknown target {name} {comparison} in {entry['name']!r}")
            targets.append(Target(name, comparison, float(value)))
        folders = tuple(root / f if not Path(f).is_absolute() else Path(f)
                        for f in entry.get("folders", ()))
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise FileNotFoundError(f"{path}: no such study folder: {', '.join(missing)}")
        sets.append(SuiteSet(entry["name"], seeds, dict(entry.get("overrides", {})), folders,
                             tuple(targets)))
    return sets


def figure(metrics: dict[str, Any], per_study: Sequence[dict[str, Any]], name: str) -> float | None:
    """One named figure of an evaluation."""
    if name == "lesion.max_false_per_study":
        return float(max((row["false_positive_lesions"] for row in per_study), default=0))
    level, key = name.split(".")
    value = metrics[level][key]
    return None if value is None else float(value)


@dataclass
class SetResult:
    """One set's figures for every run, and each target's verdict."""

    name: str
    studies: int
    runs: list[dict[str, float | None]]
    targets: tuple[Target, ...]

    def spread(self, name: str) -> float | None:
        values = [v for v in (run[name] for run in self.runs) if v is not None]
        return max(values) - min(values) if len(values) > 1 else None

    def met(self, target: Target) -> bool:
        return all(target.holds(run[target.figure]) for run in self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.name, "studies": self.studies, "runs": self.runs,
            "spread": {name: self.spread(name) for name in FIGURES},
            "targets": [{"figure": t.figure, "target": str(t), "met": self.met(t)}
                        for t in self.targets],
        }


Evaluated = tuple[dict[str, Any], Sequence[dict[str, Any]]]  # (metrics, per-study rows)


def set_result(suite_set: SuiteSet, evaluations: Sequence[Evaluated]) -> SetResult:
    """The figures of one set from each run's (metrics, per-study rows)."""
    runs = [{name: figure(metrics, rows, name) for name in FIGURES}
            for metrics, rows in evaluations]
    return SetResult(suite_set.name, suite_set.size(), runs, suite_set.targets)


def suite_markdown(results: Sequence[SetResult], models: Sequence[str]) -> str:
    """A table per set: each figure for every run, its spread, the target and the verdict."""
    runs = " | ".join(f"run {i + 1}" for i in range(len(models)))
    lines = ["Runs: " + "; ".join(f"run {i + 1} `{m}`" for i, m in enumerate(models)), ""]
    for result in results:
        targets = {t.figure: t for t in result.targets}
        lines += [f"**{result.name}** ({result.studies} studies)", "",
                  f"| figure | {runs} | spread | target | met |",
                  "|---" * (len(models) + 4) + "|"]
        for name, title in FIGURES.items():
            target = targets.get(name)
            cells = [_number(run[name]) for run in result.runs]
            verdict = "" if target is None else ("yes" if result.met(target) else "**no**")
            lines.append(f"| {title} | {' | '.join(cells)} | {_number(result.spread(name))} | "
                         f"{target or ''} | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"

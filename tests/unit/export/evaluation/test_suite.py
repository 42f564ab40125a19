"""The evaluation suite: sets and targets from its file, figures per run, spread, verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from export.evaluation.suite import FIGURES, load_suite, set_result, suite_markdown
from export.evaluation.suite_cli import SUITE


def _metrics(detected: int, truth: int, false: int, studies: int) -> dict[str, Any]:
    level = {"sensitivity": detected / truth, "ppv": detected / (detected + false),
             "false_positives_per_scan": false / studies}
    return {"per_slice": dict(level), "lesion": dict(level)}


def _rows(*false_lesions: int) -> list[dict[str, Any]]:
    return [{"false_positive_lesions": n} for n in false_lesions]


def test_the_shipped_suite_loads_with_new_seeds_and_the_issues_targets() -> None:
    sets = {s.name: s for s in load_suite(SUITE)}
    assert list(sets) == ["default phantoms", "osteoporotic phantoms",
                          "phantoms with normal variants", "real trunk series"]
    for phantom_set in list(sets.values())[:3]:
        assert phantom_set.seeds is not None and phantom_set.seeds.start >= 300000
        assert len(phantom_set.seeds) == 20
    assert sets["osteoporotic phantoms"].overrides == {"marrow_hu": [70, 140]}
    assert sets["phantoms with normal variants"].overrides == {"bone_variants": True}
    default = {t.figure: str(t) for t in sets["default phantoms"].targets}
    assert default == {"lesion.sensitivity": ">= 0.9", "lesion.false_positives_per_scan": "<= 0.5",
                       "per_slice.sensitivity": ">= 0.7", "per_slice.ppv": ">= 0.85"}
    real = sets["real trunk series"]
    assert real.seeds is None and len(real.folders) == 2 and all(f.is_dir() for f in real.folders)
    # A quick look keeps the first seeds of each phantom set.
    quick = load_suite(SUITE, studies=3)
    assert quick[0].seeds == range(300000, 300003)
    assert quick[3].folders == real.folders


@pytest.mark.parametrize("bad", [
    {"targets": {"lesion.dice": [">=", 0.5]}},
    {"targets": {"lesion.sensitivity": [">", 0.5]}},
])
def test_a_target_the_suite_cannot_measure_is_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    suite = tmp_path / "a" / "b" / "suite.json"
    suite.parent.mkdir(parents=True)
    suite.write_text(json.dumps({"sets": [{"name": "x", "phantoms": [1, 2], **bad}]}))
    with pytest.raises(ValueError, match="unknown target"):
        load_suite(suite)


def test_a_missing_study_folder_is_named(tmp_path: Path) -> None:
    suite = tmp_path / "a" / "b" / "suite.json"
    suite.parent.mkdir(parents=True)
    suite.write_text(json.dumps({"sets": [{"name": "real", "folders": ["nowhere"]}]}))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_suite(suite)


def test_each_figure_has_its_spread_and_a_target_holds_only_where_every_run_meets_it() -> None:
    default = load_suite(SUITE)[0]
    runs = [(_metrics(19, 20, 2, 20), _rows(1, 0, 1)),    # sensitivity 0.95, 0.1 false a scan
            (_metrics(17, 20, 12, 20), _rows(0, 5, 7))]   # 0.85, 0.6 false a scan
    result = set_result(default, runs)
    assert result.runs[0]["lesion.sensitivity"] == pytest.approx(0.95)
    assert result.spread("lesion.sensitivity") == pytest.approx(0.10)
    assert result.spread("lesion.false_positives_per_scan") == pytest.approx(0.5)
    assert result.runs[1]["lesion.max_false_per_study"] == 7
    verdicts = {t.figure: result.met(t) for t in default.targets}
    assert verdicts == {"lesion.sensitivity": False, "lesion.false_positives_per_scan": False,
                        "per_slice.sensitivity": True, "per_slice.ppv": False}
    one_run = set_result(default, runs[:1])
    assert one_run.spread("lesion.sensitivity") is None
    assert one_run.met(default.targets[0])
    table = suite_markdown([result], ["a.pt", "b.pt"])
    assert "| sensitivity, per lesion | 0.95 | 0.85 | 0.10 | >= 0.9 | **no** |" in table
    assert set(result.to_json()["spread"]) == set(FIGURES)


def test_an_undefined_figure_fails_its_target() -> None:
    default = load_suite(SUITE)[0]
    empty = {"per_slice": {"sensitivity": None, "ppv": None, "false_positives_per_scan": 0.0},
             "lesion": {"sensitivity": None, "ppv": None, "false_positives_per_scan": 0.0}}
    result = set_result(default, [(empty, _rows())])
    assert result.runs[0]["lesion.max_false_per_study"] == 0
    assert not result.met(default.targets[0])  # no lesion to find is no sensitivity shown

"""``bonemets bench --baseline`` and ``--profile`` without a gateway: the pure parts."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest

from export.bench.checkouts import runtime_requirements, unmet_requirements
from export.bench.concurrent import ConcurrentRun
from export.bench.markdown import benchmarks_markdown
from export.bench.profile import OTHER, parse_raw, shares, stage_of, stage_samples
from export.bench.report import format_rows
from export.bench.sides import (
    GatewayRuns,
    comparison_rows,
    interleaved,
    profile_rows,
    ratios,
    run_by_run,
)
from tests.unit.export.bench.test_bench import _results, _run

SITE = "/venv/lib/python3.11/site-packages"
LIB = "/usr/lib/python3.11"


def test_turns_alternate_and_flip_every_round() -> None:
    assert interleaved(["baseline", "current"], 3) == [
        "baseline", "current", "current", "baseline", "baseline", "current"]
    assert interleaved(["current"], 2) == ["current", "current"]
    assert interleaved(["a", "b"], 0) == []


def test_unmet_requirements_are_the_ones_installed_versions_miss() -> None:
    installed = {"numpy": "1.26.4", "fastapi": "0.115.0", "pydicom": "3.0.1"}.get
    wanted = ["numpy>=1.24", "pydicom>=2.4,<3", "fastapi>=0.110", "boto3>=1.36",
              "torch>=99; python_version < '3'", "tqdm>=4.66"]
    assert unmet_requirements(wanted, installed) == ["pydicom>=2.4,<3", "boto3>=1.36",
                                                     "tqdm>=4.66"]
    assert unmet_requirements(["numpy"], installed) == []
    assert unmet_requirements(["not a requirement !"], installed) == ["not a requirement !"]


def test_runtime_requirements_are_the_project_dependencies_only() -> None:
    text = ('[project]\nname = "x"\ndependencies = ["numpy>=1.24", "httpx"]\n'
            '[project.optional-dependencies]\ntest = ["pytest"]\n')
    assert runtime_requirements(text) == ["numpy>=1.24", "httpx"]
    assert runtime_requirements('[tool.ruff]\nline-length = 100\n') == []


def _side(rate: float, cpu_s: float, peak: int, together: float) -> GatewayRuns:
    return GatewayRuns(gateway=[_run(200, 200 / rate, 1.0)],
                       null_gateway=[_run(200, 2.0, cpu_s), _run(200, 2.0, cpu_s * 3)],
                       big_study=_run(1000, 20.0, 3.0, peak=peak),
                       concurrent=[ConcurrentRun(studies=4, slices=200, wall_s=200 / together,
                                                 cpu_s=1.0)])


def test_ratios_are_current_over_baseline() -> None:
    baseline = _side(10.0, 2.0, 400_000_000, 8.0).figures(20.0)
    current = _side(19.0, 0.5, 300_000_000, 18.0).figures(20.0)
    # median of (x, 3x) is 2x; per slice in ms: 2 s * 2 * 1000 / 200
    assert baseline["cpu_ms_per_slice"] == pytest.approx(20.0)
    assert baseline["cpu_ms_uvicorn"] == pytest.approx(10.0)
    assert baseline["cpu_ms_workers"] == pytest.approx(10.0)
    assert current["concurrent_efficiency"] == pytest.approx(0.9)
    ratio = ratios(current, baseline)
    assert ratio["cpu_ms_per_slice"] == pytest.approx(0.25)
    assert ratio["gateway_slices_per_s"] == pytest.approx(1.9)
    assert ratio["peak_rss_mb"] == pytest.approx(0.75)
    assert ratios({"x": 1.0, "y": None}, {"x": 0.0, "y": 2.0}) == {"x": None, "y": None}
    rows = {row[0]: row[1:] for row in comparison_rows(current, baseline, studies=4, big=1000)}
    assert rows["(c) gateway CPU per slice, ms"] == ("20.00", "5.00", "0.25", "-")
    assert rows["(b4) 4 studies at once, slices/s"] == ("8.0", "18.0", "2.25", "-")
    assert rows["(e) peak RSS, 1000-slice study, MB"] == ("400", "300", "0.75", "-")


def test_run_by_run_ratios_pair_the_runs_taken_in_turn() -> None:
    baseline = _side(10.0, 2.0, 400_000_000, 8.0)
    current = _side(19.0, 0.5, 300_000_000, 18.0)
    # CPU runs are (x, 3x) on each side: the pairs give 0.25 both times.
    spans = run_by_run(current, baseline)
    assert spans["cpu_ms_per_slice"] == pytest.approx((0.25, 0.25))
    # A noisy pair shows: the median ratio alone would hide it.
    current.gateway.append(_run(200, 200 / 5.0, 1.0))
    baseline.gateway.append(_run(200, 200 / 20.0, 1.0))
    low, high = run_by_run(current, baseline)["gateway_slices_per_s"]
    assert low == pytest.approx(0.25) and high == pytest.approx(1.9)
    assert run_by_run(current, baseline)["gateway_efficiency"] == (low, high)
    assert "peak_rss_mb" not in spans  # one run a side: no range
    rows = {row[0]: row[4] for row in comparison_rows(
        current.figures(20.0), baseline.figures(20.0), studies=4, big=1000, spans=spans)}
    assert rows["(c) gateway CPU per slice, ms"] == "0.25–0.25"


def test_ratio_targets_appear_with_a_baseline_and_judge_the_ratio() -> None:
    results = _results()
    assert "cpu_ms_per_slice" not in [row["label"] for row in results.targets()]
    results.baseline = _side(10.0, 0.5, 600_000_000, 8.0)  # 5 ms per slice, vs current's 2
    rows = {row["label"]: row for row in results.targets()}
    cpu = rows["(c) gateway CPU per slice, current/baseline"]
    assert cpu["measured"] == pytest.approx(0.4) and cpu["passed"] is False
    memory = rows["(e) peak RSS, current/baseline"]
    assert memory["measured"] == pytest.approx(700 / 600) and memory["passed"] is False
    results.checkouts = {"baseline": {"commit": "4b85dc90a6ed17d4", "install": "this interpreter"},
                         "current": {"commit": "73b0601af414", "install": "this interpreter"}}
    results.settings["baseline"] = "4b85dc9"
    page = benchmarks_markdown(results)
    assert "## Side by side with 4b85dc9" in page
    assert "| (c) gateway CPU per slice, ms | 5.00 | 2.00 | 0.40 |" in page
    assert "Command: `bonemets bench --quick` on the machine above" in page
    assert results.to_json()["comparison"][4]["ratio"] == "0.40"


def _frame(function: str, path: str, line: int = 1) -> str:
    return f"{function} ({path}:{line})"


LOOP = _frame("_run_once", f"{LIB}/asyncio/base_events.py")
RAW = "\n".join([
    ";".join(["thread (0x7F01)", LOOP, _frame("feed", f"{SITE}/python_multipart/multipart.py"),
              _frame("_internal_write", f"{SITE}/python_multipart/multipart.py")]) + " 30",
    ";".join(["thread (0x7F01)", LOOP, _frame("select_series", "/w/api/dicom/series.py"),
              _frame("read_header", "/w/api/dicom/headers.py"),
              _frame("dcmread", f"{SITE}/pydicom/filereader.py")]) + " 50",
    ";".join(["thread (0x7F02)", _frame("_process_worker", f"{LIB}/concurrent/futures/process.py"),
              _frame("decode_batch", "/w/api/study/decoding.py"),
              _frame("pixel_array", f"{SITE}/pydicom/dataset.py")]) + " 15",
    ";".join(["thread (0x7F02)", _frame("_process_worker", f"{LIB}/concurrent/futures/process.py"),
              _frame("_sendback_result", f"{LIB}/concurrent/futures/process.py"),
              _frame("put", f"{LIB}/multiprocessing/queues.py")]) + " 5",
    ";".join(["thread (0x7F01)", LOOP]) + " 20",
    "not a sample line",
])


def test_samples_go_to_the_stage_of_their_leaf_most_matching_frame() -> None:
    stacks = parse_raw(RAW)
    assert sum(stacks.values()) == 120
    assert not any(frame.startswith("thread") for stack in stacks for frame in stack)
    counts = stage_samples(stacks)
    assert counts["HTTP receive / multipart"] == 30
    assert counts["header pass"] == 50  # pydicom under read_header: the header pass's
    assert counts["decode"] == 15  # pydicom under the decoder: decoding's
    assert counts["inter-process transfer"] == 5
    assert counts[OTHER] == 20
    assert counts["job database"] == 0 and sum(counts.values()) == 120
    assert shares(counts)["header pass"] == pytest.approx(50 / 120)
    assert stage_of([_frame("f", "/w/api/db/sqlite.py"), _frame("g", f"{SITE}/numpy/x.py")]) \
        == "job database"
    assert stage_of([]) == OTHER
    resize = _frame("resize_to_model", "/w/api/dicom/geometry.py")
    assert stage_of([_frame("decode_batch", "/w/api/study/decoding.py"), resize]) == "decode"
    assert stage_of([_frame("select_series", "/w/api/dicom/series.py"), resize]) == "header pass"


def test_profile_table_has_a_column_per_side_and_process() -> None:
    profiles = {"current": {"uvicorn": {"decode": 1, "other": 3}},
                "baseline": {"uvicorn": {"decode": 3, "other": 1},
                             "decode workers": {"decode": 0, "other": 0}}}
    headers, rows = profile_rows(profiles)
    assert headers == ("stage", "baseline: uvicorn", "baseline: decode workers",
                       "current: uvicorn")
    assert rows == [("decode", "75 %", "-", "25 %"), ("other", "25 %", "-", "75 %"),
                    ("samples", "4", "0", "4")]
    _, rows = profile_rows(profiles, {("current", "uvicorn"): 2.0})
    assert rows[0] == ("decode", "75 %", "-", "25 % (0.50 ms)")
    assert format_rows(("a", "bb"), [("ccc", "d")]).splitlines() == ["a    bb", "---  --",
                                                                     "ccc  d"]


def test_this_checkout_is_probed_from_its_own_tree() -> None:
    """The probe runs this tree's code in a subprocess: api from here, its Settings' names."""
    from export.bench.checkouts import PROJECT_ROOT, current_checkout

    checkout = current_checkout()
    assert Path(checkout.api_module) == PROJECT_ROOT / "api" / "__init__.py"
    assert checkout.has_key_store and "batch_size" in checkout.settings
    env = checkout.env({"BONEMETS_BATCH_SIZE": "8", "BONEMETS_NO_SUCH_SETTING": "1"})
    assert env["BONEMETS_BATCH_SIZE"] == "8" and "BONEMETS_NO_SUCH_SETTING" not in env
    assert env["PYTHONPATH"] == str(PROJECT_ROOT)
    older = replace(checkout, settings=("model_name",))  # a revision without batch_size
    assert "BONEMETS_BATCH_SIZE" not in older.env({"BONEMETS_BATCH_SIZE": "8"})


def test_the_profile_option_reaches_the_plan() -> None:
    from export.bench.cli import resolve

    given = {"quick": True, "batch": 8, "slices": None, "big_study_slices": None,
             "concurrency": None, "repeats": None, "warmup": None, "window": None}
    assert resolve(argparse.Namespace(**given, profile=True)).profile is True
    assert resolve(argparse.Namespace(**given)).profile is False


def test_an_unknown_baseline_is_the_users_mistake(tmp_path: Path) -> None:
    from export.bench.checkouts import baseline_checkout

    with pytest.raises(ValueError, match="no such commit"):
        baseline_checkout("no-such-revision-0000", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no worktree made

"""``bonemets soak`` and ``bonemets load`` without a server: the figures, the verdicts, the
page section, the durations and the locust command line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from export.bench.load import LOCUSTFILE, LoadPlan, locust_command, parse_duration, read_stats
from export.bench.soak_report import (
    percentile,
    slope_per_minute,
    slope_window,
    soak_markdown,
    soak_section,
    verdicts,
    write_soak_section,
)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0, 5.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.95) == pytest.approx(4.8)
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 5.0
    assert percentile([], 0.5) is None and percentile([7.0], 0.95) == 7.0


def test_the_slope_is_per_minute_and_ignores_a_flat_series() -> None:
    rising = [(t, 100.0 + 0.05 * t) for t in range(0, 300, 5)]  # 0.05 MB/s = 3 MB/min
    assert slope_per_minute(rising) == pytest.approx(3.0)
    assert slope_per_minute([(t, 250.0) for t in range(0, 300, 5)]) == pytest.approx(0.0)
    assert slope_per_minute([(0, 1.0), (5, 2.0)]) is None  # two points are not a trend


def test_the_window_is_the_loads_last_four_minutes() -> None:
    samples = [(float(t), float(t)) for t in range(0, 400, 5)]
    window = slope_window(samples, load_end_s=300.0)
    assert window[0][0] == 60.0 and window[-1][0] == 300.0  # nothing of the drain after it
    short = slope_window(samples, load_end_s=30.0)  # a short run: all but the warm-up fifth
    assert short[0][0] == 10.0 and short[-1][0] == 30.0


def _results(**changes: Any) -> dict[str, Any]:
    results: dict[str, Any] = {
        "command": "bonemets soak", "date": "2026-12-07T22:05+00:00",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "ram_gb": 23.5, "gpu": "none",
                    "load_average": [1.5, 1.2, 1.0], "python": "3.11.7",
                    "load_average_end": [3.9, 2.9, 2.1]},
        "settings": {"users": 20, "duration_s": 300, "think": "1:5", "studies": 4,
                     "slices": 32, "size": 512, "model": "bonemets demo-1"},
        "baseline": {"runs_s": [3.1, 3.0, 3.2], "median_s": 3.1},
        "load": {"requests": 900, "failures": 0, "studies_succeeded": 80, "studies_failed": 0,
                 "p50_s": 40.0, "p95_s": 62.0, "max_s": 70.0},
        "memory": {"interval_s": 5.0, "bound_mb_per_min": 5.0, "gateway_start_mb": 230.0,
                   "gateway_peak_mb": 350.0, "gateway_end_mb": 340.0, "workers_start_mb": 90.0,
                   "workers_end_mb": 190.0, "slope_window_s": 240.0, "slope_samples": 49,
                   "gateway_slope_mb_per_min": 0.4},
        "cleanup": {"left_over_deleted": 3, "files_left": 0, "files_left_sample": []},
    }
    for path, value in changes.items():
        section, field = path.split("__")
        results[section][field] = value
    return results


def test_each_condition_fails_on_its_own() -> None:
    assert all(ok for _, _, ok in verdicts(_results()))
    for change in ({"load__failures": 1}, {"memory__gateway_slope_mb_per_min": 5.5},
                   {"memory__gateway_slope_mb_per_min": None}, {"cleanup__files_left": 2},
                   {"load__studies_succeeded": 0}):
        failed = [what for what, _, ok in verdicts(_results(**change)) if not ok]
        assert len(failed) == 1, change


def test_the_page_section_is_written_once_and_kept_by_bench(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nfigures\n", encoding="utf-8")
    section = soak_markdown(_results(), "The other helper's tests ran meanwhile.")
    assert "## Soak: 20 uploaders for 5 minutes" in section
    assert "| upload to result under load, p50 / p95 / max | 40.0 s / 62.0 s / 70.0 s |" \
        in section
    assert "| p95 under load / baseline median | 20.0x |" in section
    assert "| gateway RSS slope <= 5 MB/min | +0.40 MB/min | pass |" in section
    assert "helper's tests ran meanwhile" in section
    assert "began: 1.50, 1.20, 1.00, when it ended: 3.90, 2.90, 2.10." in section
    write_soak_section(page, section)
    write_soak_section(page, section.replace("62.0 s", "61.0 s"))  # replaced, not doubled
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nfigures\n") and text.count("## Soak") == 1
    assert "61.0 s" in text and soak_section(text) is not None

    from export.bench.markdown import write_benchmarks_page
    from tests.unit.export.bench.test_bench import _results as bench_results

    write_benchmarks_page(page, bench_results())
    rewritten = page.read_text(encoding="utf-8")
    assert "figures\n" not in rewritten and rewritten.count("## Soak") == 1
    assert soak_section(rewritten) == soak_section(text)


def test_a_first_soak_section_goes_before_the_tensorrt_one(tmp_path: Path) -> None:
    from export.bench.markdown import write_benchmarks_page
    from export.packaging.tensorrt_report import write_report_section
    from tests.unit.export.bench.test_bench import _results as bench_results

    page = tmp_path / "benchmarks.md"
    write_benchmarks_page(page, bench_results())
    write_report_section(page, "## TensorRT engine\n\n| 8 | 1234.5 |\n")
    write_soak_section(page, soak_markdown(_results()))
    text = page.read_text(encoding="utf-8")
    assert text.index("## Soak") < text.index("## TensorRT engine")
    write_benchmarks_page(page, bench_results())  # bench's order: the same page again
    assert page.read_text(encoding="utf-8") == text


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("5m", 300),
                                                ("1h30m", 5400), ("2m15s", 135)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "m", "-3", "1.5m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_the_locust_command_is_headless_and_reports_into_out(tmp_path: Path) -> None:
    plan = LoadPlan(url="http://127.0.0.1:9", key="k", users=7, duration_s=45,
                    studies=tmp_path, out=tmp_path / "out")
    command = locust_command(plan)
    assert command[:3] == [sys.executable, "-m", "locust"] and "--headless" in command
    assert command[command.index("-f") + 1] == str(LOCUSTFILE) and LOCUSTFILE.is_file()
    assert command[command.index("--users") + 1] == "7"
    assert command[command.index("--run-time") + 1] == "45s"
    assert command[command.index("--csv") + 1] == str(tmp_path / "out" / "load")
    assert command[command.index("--html") + 1] == str(tmp_path / "out" / "report.html")
    assert "k" not in command  # the key goes by the environment, not argv (ps shows argv)


def test_locust_stats_are_read_by_name(tmp_path: Path) -> None:
    stats = tmp_path / "load_stats.csv"
    stats.write_text("Type,Name,Request Count,Failure Count\nGET,/v1/studies/{job_id},12,1\n"
                     ",Aggregated,30,1\n", encoding="utf-8")
    rows = read_stats(stats)
    assert rows["/v1/studies/{job_id}"]["Request Count"] == "12"
    assert rows["Aggregated"]["Failure Count"] == "1"
    assert read_stats(tmp_path / "missing.csv") == {}


def test_load_and_soak_are_commands_with_examples() -> None:
    from export.bench import load, soak

    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    load.add_parser(commands)
    soak.add_parser(commands)
    args = parser.parse_args(["load", "--users", "3", "--duration", "1m", "--url", "http://h"])
    assert (args.users, args.duration, args.think) == (3, 60, "5:15")
    assert parser.parse_args(["soak"]).users == 20 and parser.parse_args(["soak"]).duration == 300
    with pytest.raises(SystemExit):
        parser.parse_args(["load", "--users", "3", "--duration", "soon", "--url", "http://h"])
    text = subprocess.run([sys.executable, "-c", "import argparse, sys\n"
                           "from export.bench import load\n"
                           "p = argparse.ArgumentParser(prog='bonemets'); load.add_parser("
                           "p.add_subparsers()); p.parse_args(['load', '--help'])"],
                          capture_output=True, text=True, check=True).stdout
    assert "examples:" in text and "bonemets load --users 10 --duration 2m" in text


def test_the_entry_points_name_both_commands() -> None:
    import tomllib

    pyproject = tomllib.loads((LOCUSTFILE.parents[2] / "pyproject.toml").read_text())
    commands = pyproject["project"]["entry-points"]["bonemets.commands"]
    assert commands["load"] == "export.bench.load:add_parser"
    assert commands["soak"] == "export.bench.soak:add_parser"
    assert any(dep.startswith("locust") for dep in pyproject["project"]["optional-dependencies"]
               ["test"])


def test_the_load_key_is_a_load_test_clients_in_the_gateways_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.auth.keys import open_key_store
    from export.bench.load import make_load_key

    monkeypatch.delenv("BONEMETS_DATABASE_URL", raising=False)
    key = make_load_key(tmp_path)
    store = open_key_store(tmp_path)
    try:
        principal = store.verify(key)
    finally:
        store.close()
    assert principal is not None and principal.client == "load-test"
    assert {"studies:write", "studies:read", "studies:delete"} <= {
        str(getattr(scope, "value", scope)) for scope in principal.scopes}

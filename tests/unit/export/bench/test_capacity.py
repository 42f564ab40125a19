"""``bonemets capacity``: the sizing arithmetic, its inputs from a bench file, and the FLOPs
it counts on the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli import main
from export.bench.capacity import MEASURED, Load, gflop_per_slice, measured_from, size


def test_the_peak_rate_spreads_the_day_over_its_busy_hours_times_the_burst() -> None:
    load = Load(studies_per_day=1000, slices_per_study=500, busy_hours=10, burst=3)
    assert load.peak_slices_per_s == pytest.approx(1000 * 500 / 36000 * 3)


def test_sizing_rounds_up_keeps_two_of_each_and_counts_bytes_and_storage() -> None:
    measured = {**MEASURED, "api_ms_per_slice": 10.0, "worker_ms_per_slice": 50.0,
                "cpu_triton_slices_per_s_per_core": 7.0}
    load = Load(studies_per_day=10_000, slices_per_study=500, busy_hours=10, burst=3)
    peak = load.peak_slices_per_s  # 416.7 slices/s
    row = size(load, measured, {"net": 200.0}, utilisation=0.5, retention_days=7)
    assert row.api_pods == 9  # 416.7 x 10 ms / 0.5 = 8.3 cores
    assert row.worker_cores == 42  # 416.7 x 50 ms / 0.5 = 41.7
    assert row.cpu_triton_cores == 120  # 416.7 / 7 / 0.5 = 119.0
    assert row.gpus == {"net": 5}  # 416.7 / 200 / 0.5 = 4.2
    assert row.network_mbit_s == pytest.approx(peak * 0.524 * 8, abs=0.1)
    assert row.stored_tb == pytest.approx(10_000 * 500 * 0.524 * 7 / 1e6, abs=0.01)
    quiet = size(Load(10, 500, 10, 3), measured, {"net": 200.0}, 0.5, 7)
    assert (quiet.api_pods, quiet.worker_cores, quiet.gpus["net"]) == (2, 2, 1)


def test_the_gateway_figures_come_from_a_bench_file(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({
        "date": "2026-12-07", "machine": {"cores": 4},
        "figures": {"mb_in_per_slice": 0.5, "direct_best_slices_per_s": 40.0},
        "null_gateway": [{"slices": 100, "cpu_s": 0.5, "intake_cpu_s": 0.2},
                         {"slices": 100, "cpu_s": 0.7, "intake_cpu_s": 0.2}]}))
    measured = measured_from(bench)
    assert measured["api_ms_per_slice"] == pytest.approx(2.0)
    assert measured["worker_ms_per_slice"] == pytest.approx(4.0)
    assert measured["cpu_triton_slices_per_s_per_core"] == pytest.approx(10.0)
    bench.write_text(json.dumps({"null_gateway": [{"slices": 1, "cpu_s": 1,
                                                   "intake_cpu_s": None}]}))
    with pytest.raises(ValueError, match="intake split"):
        measured_from(bench)


def test_the_flops_are_counted_on_the_model_itself() -> None:
    pytest.importorskip("torch")
    demo, wide = gflop_per_slice(18, 0.25), gflop_per_slice(18, 0.5)
    assert 4.0 < demo < 7.0
    assert wide > 3 * demo  # channels doubled: about four times the multiply-adds


def test_the_command_prints_the_table_and_writes_its_inputs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "capacity.json"
    assert main(["capacity", "--studies", "100,10000", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 10,000 | 416.7 |" in printed and "GFLOP/slice" in printed
    written = json.loads(out.read_text())
    assert [row["studies_per_day"] for row in written["sizing"]] == [100, 10000]
    assert written["measured"]["source"].startswith("docs/benchmarks.md")

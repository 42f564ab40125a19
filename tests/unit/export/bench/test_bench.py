"""``bonemets bench`` without Triton: /proc parsing, byte accounting, the null model, reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.inference.contract import (
    INPUT_NAME,
    MASK_OUTPUT,
    PROBABILITY_OUTPUT,
    parse_windows,
)
from export.bench import procfs
from export.bench.cli import resolve
from export.bench.gateway import StudyRun
from export.bench.markdown import benchmarks_markdown
from export.bench.null_model import (
    NULL_MODEL_NAME,
    install_null_model,
    null_config,
    null_outputs,
)
from export.bench.report import BenchResults, Machine, format_table, target_rows
from export.bench.triton_direct import (
    Completion,
    DirectResult,
    MeasurementWindow,
    _infer,
    parse_counters,
    summarize,
)

SLICE_IN = 512 * 512 * 2
SLICE_OUT = 512 * 64 + 128 * 128


# --- /proc ---------------------------------------------------------------------------------

def test_parse_stat_survives_a_command_name_with_spaces_and_parentheses() -> None:
    line = ("4242 (uvi corn) (x)) S 17 4242 4242 0 -1 4194560 500 0 0 0 "
            "250 50 30 20 20 0 9 0 100 0 0\n")
    stat = procfs.parse_stat(line, ticks=100)
    assert (stat.pid, stat.ppid) == (4242, 17)
    assert (stat.user_s, stat.system_s) == (2.5, 0.5)
    assert (stat.children_user_s, stat.children_system_s) == (0.3, 0.2)
    assert stat.cpu_s == pytest.approx(3.5)


def test_parse_statm_and_pss() -> None:
    assert procfs.parse_statm_rss("1000 250 30 1 0 200 0", page_bytes=4096) == 250 * 4096
    rollup = "00400000-7fff [rollup]\nRss:   2048 kB\nPss:   1536 kB\nPss_Anon: 1 kB\n"
    assert procfs.parse_pss(rollup) == 1536 * 1024
    assert procfs.parse_pss("Rss: 1 kB\n") is None


def test_process_tree_finds_a_live_child_and_sums_its_memory() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pids = procfs.tree_pids(os.getpid())
        assert pids[0] == os.getpid() and child.pid in pids
        memory = procfs.tree_memory(os.getpid(), with_pss=False)
        assert memory.rss == sum(memory.rss_by_role.values())
        assert memory.rss_by_role["gateway"] > 0 and memory.pss is None
    finally:
        child.kill()
        child.wait()
    assert procfs.tree_pids(child.pid) == []


# --- byte accounting and summaries ---------------------------------------------------------

class _FakeClient:
    """Answers like Triton would with the null model: a real gRPC response message."""

    async def infer(self, model: str, inputs: list[Any], outputs: list[Any],
                    client_timeout: float) -> Any:
        from tritonclient.grpc import InferResult, service_pb2

        count = inputs[0].shape()[0]
        response = service_pb2.ModelInferResponse(model_name=model)
        for name, array in null_outputs(count).items():
            tensor = response.outputs.add(name=name, datatype="UINT8")
            tensor.shape.extend(array.shape)
            response.raw_output_contents.append(array.tobytes())
        return InferResult(response)


def test_bytes_counted_are_the_tensors_actually_sent_and_received() -> None:
    hounsfield = np.zeros((8, 512, 512), dtype=np.int16)
    done = asyncio.run(_infer(_FakeClient(), NULL_MODEL_NAME, hounsfield))
    assert done.slices == 8
    assert done.bytes_in == 8 * SLICE_IN
    assert done.bytes_out == 8 * SLICE_OUT
    assert done.message_out > done.bytes_out  # names, shapes and framing come on top


def _completion(answered: float, latency: float, slices: int = 8) -> Completion:
    return Completion(answered - latency, answered, slices, slices * SLICE_IN,
                      slices * SLICE_OUT, slices * SLICE_OUT + 100)


def test_summarize_counts_only_completions_inside_the_window() -> None:
    completions = [_completion(0.5, 0.4)]  # warm-up: outside
    completions += [_completion(1.0 + k, 0.1 * (k + 1)) for k in range(4)]  # 1.0 .. 4.0
    completions += [_completion(5.5, 0.1)]  # after the window
    result = summarize(completions, MeasurementWindow(1.0, 5.0), concurrency=2, batch=8)
    assert (result.requests, result.slices) == (4, 32)
    assert result.slices_per_s == pytest.approx(8.0)
    assert result.p50_ms == pytest.approx(250.0)
    assert result.p99_ms == pytest.approx(397.0)
    assert result.bytes_in_per_slice == SLICE_IN
    assert result.bytes_out_per_slice == SLICE_OUT
    with pytest.raises(ValueError, match="no request"):
        summarize(completions, MeasurementWindow(10.0, 11.0), concurrency=2, batch=8)


def test_parse_counters_sums_versions_of_the_named_model_only() -> None:
    text = """# HELP nv_inference_count Number of inferences performed
nv_inference_count{model="bonemets",version="1"} 72
nv_inference_count{model="bonemets",version="2"} 8
nv_inference_count{model="bonemets_null",version="1"} 1000
nv_inference_compute_infer_duration_us{model="bonemets",version="1"} 123456
nv_cpu_utilization 0.5
"""
    counters = parse_counters(text, "bonemets")
    assert counters == {"nv_inference_count": 80.0,
                        "nv_inference_compute_infer_duration_us": 123456.0}


# --- the null model ------------------------------------------------------------------------

def test_null_outputs_are_zeros_of_the_contract_shapes() -> None:
    outputs = null_outputs(3)
    assert set(outputs) == {MASK_OUTPUT, PROBABILITY_OUTPUT}
    assert outputs[MASK_OUTPUT].shape == (3, 512, 64)
    assert outputs[PROBABILITY_OUTPUT].shape == (3, 128, 128)
    assert all(a.dtype == np.uint8 and not a.any() for a in outputs.values())


def test_null_model_is_installed_with_the_contract_and_the_gateway_parameters(
    tmp_path: Path,
) -> None:
    model_dir = install_null_model(tmp_path)
    config = (model_dir / "config.pbtxt").read_text()
    assert config == null_config()
    assert f'name: "{NULL_MODEL_NAME}"' in config and 'backend: "python"' in config
    assert f'{{ name: "{INPUT_NAME}" data_type: TYPE_INT16 dims: [ 512, 512 ] }}' in config
    assert f'{{ name: "{MASK_OUTPUT}" data_type: TYPE_UINT8 dims: [ 512, 64 ] }}' in config
    assert '{ name: "PROBABILITY" data_type: TYPE_UINT8 dims: [ 128, 128 ] }' in config
    windows = config.split('key: "windows" value: { string_value: "')[1].split('"')[0]
    assert parse_windows(windows)[0].level == 400.0
    template = Path(__file__).resolve().parents[4] / "export/bench/null_triton_model.py"
    assert (model_dir / "1" / "model.py").read_text() == template.read_text()


# --- studies -------------------------------------------------------------------------------

def test_synthetic_study_reads_back_as_the_same_hounsfield_units(tmp_path: Path) -> None:
    from api.dicom.series import load_slice_hounsfield, select_ct_series
    from export.bench.studies import synthetic_volume, write_synthetic_study

    paths = write_synthetic_study(tmp_path, 3, 0.625, seed=5)
    series = select_ct_series(list(reversed(paths)))
    read = np.stack([load_slice_hounsfield(ref) for ref in series.slices])
    assert np.array_equal(read, synthetic_volume(3, 0.625, seed=5))
    assert series.slice_spacing_mm == pytest.approx(0.625)


# --- reports -------------------------------------------------------------------------------

def _run(slices: int, wall_s: float, cpu_s: float, peak: int = 0) -> StudyRun:
    return StudyRun(slices=slices, upload_bytes=slices * 530_000, wall_s=wall_s, cpu_s=cpu_s,
                    cpu_gateway_process_s=cpu_s / 2, intake_cpu_s=cpu_s / 4,
                    start_rss_bytes=peak // 2, peak_rss_bytes=peak, peak_pss_bytes=None,
                    peak_rss_by_role={"gateway": peak}, timings={})


def _results() -> BenchResults:
    machine = Machine(cpu="Test CPU", cores=2, ram_gb=8.0, gpu="none",
                      load_average=(0.5, 0.4, 0.3), python="3.11.9")
    results = BenchResults(
        command="bonemets bench --quick", date="2026-01-02T03:04+00:00", machine=machine,
        settings={"slices": 200, "big_study_slices": 1000, "concurrency": "1,4", "batch": 8,
                  "repeats": 3, "warmup_s": 5.0, "window_s": 15.0},
        models={"demo": "bonemets demo-1", "null": "bonemets_null"},
        studies={"study": "200 slices"},
    )
    for concurrency, rate in ((1, 10.0), (4, 20.0)):
        results.direct.append(DirectResult(concurrency, 8, 10.0, 25, 8 * 25, rate, 400.0, 900.0,
                                           SLICE_IN, SLICE_OUT, SLICE_OUT + 50))
    results.gateway = [_run(200, 200 / rate, 1.0) for rate in (17.0, 19.0, 18.0)]
    results.null_gateway = [_run(200, 2.0, cpu) for cpu in (0.3, 0.5, 0.4)]
    results.big_study = _run(1000, 20.0, 3.0, peak=700_000_000)
    return results


def test_figures_and_targets_are_computed_from_the_runs() -> None:
    results = _results()
    figures = results.figures()
    assert figures["direct_best_slices_per_s"] == 20.0
    assert figures["gateway_slices_per_s"] == pytest.approx(18.0)
    assert figures["gateway_efficiency"] == pytest.approx(0.9)
    assert figures["cpu_ms_per_slice"] == pytest.approx(2.0)
    assert figures["mb_in_per_slice"] == pytest.approx(0.524288)
    assert figures["mb_out_per_slice"] == pytest.approx(0.049152)
    assert figures["peak_rss_mb"] == pytest.approx(700.0)
    verdicts = {row["name"]: row["passed"] for row in results.targets()}
    assert verdicts == {"gateway_efficiency": False, "concurrent_efficiency": None,
                        "cpu_ms_per_slice": True, "mb_in_per_slice": True,
                        "mb_out_per_slice": True, "peak_rss_mb": False}


def test_targets_not_measured_say_so() -> None:
    results = _results()
    results.big_study = None
    results.gateway = []
    rows = dict(target_rows(results))
    assert rows["(e) gateway peak RSS, large-slice study, MB <= 600"] == "- -> not measured"
    assert rows["(b)/(a): end-to-end over direct Triton throughput >= 0.95"] == (
        "- -> not measured")


def test_json_round_trips() -> None:
    document = json.loads(json.dumps(_results().to_json()))
    assert document["figures"]["peak_rss_mb"] == pytest.approx(700.0)
    assert [t["passed"] for t in document["targets"]] == [False, None, True, True, True, False]
    assert document["direct"][1]["slices_per_s"] == 20.0


def test_table_aligns_the_value_column() -> None:
    table = format_table([("a", "1"), ("longer name", "2")], ("What", "Value"))
    assert table.splitlines() == [
        "What         Value",
        "-----------  -----",
        "a            1",
        "longer name  2",
    ]


def test_docs_page_names_command_machine_and_every_verdict() -> None:
    page = benchmarks_markdown(_results())
    assert "Command: `bonemets bench --quick`" in page
    assert "A `--quick` run" in page
    assert "| CPU | Test CPU |" in page and "| Cores | 2 |" in page and "| GPU | none |" in page
    assert "2-core CPU machine without a GPU" in page
    assert "| (e) gateway peak RSS, 1000-slice study, MB <= 600 | 700.000 | FAIL |" in page
    assert page.count("| pass |") == 3 and page.count("| FAIL |") == 2


def test_rewriting_the_page_keeps_the_tensorrt_section(tmp_path: Path) -> None:
    """A CPU benchmark run rewrites the page whole but must not erase GPU figures."""
    from export.bench.markdown import write_benchmarks_page
    from export.packaging.tensorrt_report import write_report_section

    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nold figures: 1 slice/s\n", encoding="utf-8")
    write_report_section(page, "## TensorRT engine\n\n| 8 | 1234.5 |\n")
    write_benchmarks_page(page, _results())
    text = page.read_text(encoding="utf-8")
    assert "old figures" not in text and "Command: `bonemets bench --quick`" in text
    assert text.count("| 8 | 1234.5 |") == 1 and text.endswith("tensorrt: end -->\n")
    write_benchmarks_page(page, _results())  # again: still once, nothing doubled
    assert page.read_text(encoding="utf-8") == text

    fresh = tmp_path / "fresh.md"
    write_benchmarks_page(fresh, _results())
    assert "<!--" not in fresh.read_text(encoding="utf-8")  # no section to keep, none made


def test_quick_and_explicit_options_resolve() -> None:
    def namespace(**given: object) -> argparse.Namespace:
        base = {"quick": False, "batch": 8, "slices": None, "big_study_slices": None,
                "concurrency": None, "repeats": None, "warmup": None, "window": None}
        return argparse.Namespace(**{**base, **given})

    full = resolve(namespace())
    assert (full.slices, full.big_study_slices, full.concurrency) == (200, 1000, (1, 2, 4, 8))
    quick = resolve(namespace(quick=True, slices=64))
    assert (quick.slices, quick.big_study_slices, quick.concurrency) == (64, 200, (1, 4))
    with pytest.raises(ValueError):
        resolve(namespace(concurrency="0,2"))

"""The dashboard and the alert rules name only metrics that exist: every name in a panel's
query or a rule's expression is in a live gateway's scrape (``bonemets serve`` with its metrics
on a port of their own, in front of a live Triton, after one study) or in that Triton's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from api.errors import InferenceTimeout
from api.inference.triton import TritonSegmenter
from tests.api.conftest import as_files, build_series
from tests.api.scrapes import counted, metric_names, samples, value
from tests.integration.conftest import TritonEndpoint, free_ports
from tests.integration.dashboard_picture import draw
from tests.integration.prometheus_server import PROMETHEUS, PROMTOOL, running_prometheus
from tests.integration.test_gateway import start_gateway, stop_gateway
from tests.monitoring import ALERTS, dashboard, load_yaml, names_used, panel_expressions

pytestmark = pytest.mark.integration

# Triton's GPU metrics, documented at
# https://github.com/triton-inference-server/server/blob/main/docs/user_guide/metrics.md#gpu-metrics
# A CPU-only Triton (this machine's) never exposes them, so they cannot be scraped here: a
# name the dashboard or the rules use from this list is accepted as Triton's documented name,
# and any other name must be in a scrape.
TRITON_GPU_METRICS = frozenset({
    "nv_gpu_utilization", "nv_gpu_memory_total_bytes", "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage", "nv_gpu_power_limit", "nv_energy_consumption",
})
# Written by Prometheus itself for every target, never by the target.
PROMETHEUS_SYNTHETIC = frozenset({"up"})


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
    return text


def test_every_metric_on_the_dashboard_and_in_the_alerts_exists(
    triton_server: TritonEndpoint, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    process, gateway = start_gateway(triton_server.grpc_url, tmp_path / "data",
                                     BONEMETS_METRICS=f"port:{port}",
                                     BONEMETS_MODEL_NAME=triton_server.model_name)
    try:
        series = build_series(tmp_path / "series", slices=3, size=64)
        with gateway.client(timeout=120) as client:
            answer = client.post("/v1/studies", files=as_files(series.paths),
                                 params={"wait": 90})
            assert answer.status_code in (200, 202), answer.text
            job = client.get(f"/v1/studies/{answer.json()['id']}").json()
            assert job["state"] == "succeeded", job
            assert client.get("/readyz").status_code == 200
            # Not on the gateway's port: on its own, without credentials.
            assert client.get("/metrics").status_code == 404
        gateway_text = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        stop_gateway(process)
    triton_text = scrape(triton_server.metrics_url)
    found = samples(gateway_text)
    # The study went through this Triton: the gateway's side of it is counted.
    endpoint = {"endpoint": triton_server.grpc_url}
    assert value(found, "bonemets_triton_request_duration_seconds_count", **endpoint) >= 1
    assert value(found, "bonemets_triton_batch_size_sum", **endpoint) == 3
    assert value(found, "bonemets_studies_total", outcome="succeeded", problem="none") == 1
    assert value(found, "bonemets_ready") == 1

    exposed = metric_names(gateway_text) | metric_names(triton_text) | PROMETHEUS_SYNTHETIC
    used = names_used()
    assert len(used) > 25  # the extraction found the board's and the rules' names
    missing = {name: sorted(where) for name, where in used.items()
               if name not in exposed and name not in TRITON_GPU_METRICS}
    assert missing == {}, f"named in the dashboard or alerts, in no scrape: {missing}"
    # The GPU-only names are GPU-only: none of them is in the CPU Triton's scrape.
    assert not (TRITON_GPU_METRICS & exposed)
    assert {"nv_gpu_utilization", "nv_gpu_memory_used_bytes"} <= set(used)
    assert {"nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
            "nv_inference_request_success", "nv_inference_request_failure"} <= exposed & set(used)


def test_a_failed_inference_request_is_counted_under_its_endpoint_and_error(
    triton_server: TritonEndpoint,
) -> None:
    hounsfield = np.full((2, 512, 512), 40, dtype=np.int16)
    labels = {"endpoint": triton_server.grpc_url}

    async def time_out() -> None:
        model = TritonSegmenter(triton_server.grpc_url, triton_server.model_name, timeout_s=60)
        try:
            await model.info()  # asked once, then cached: only the request times out
            model.timeout_s = 1e-4
            with pytest.raises(InferenceTimeout):
                await model.segment(hounsfield)
        finally:
            await model.close()

    errors = counted("bonemets_triton_errors_total", error="timeout", **labels)
    requests = counted("bonemets_triton_request_duration_seconds_count", **labels)
    slices = counted("bonemets_triton_batch_size_sum", **labels)
    asyncio.run(time_out())
    assert counted("bonemets_triton_errors_total", error="timeout", **labels) == errors + 1
    assert counted("bonemets_triton_request_duration_seconds_count", **labels) == requests + 1
    assert counted("bonemets_triton_batch_size_sum", **labels) == slices + 2


STUDIES = 5
# Panels a few studies through a live gateway and Triton must fill: the board's main lines;
# and those whose lines must rise above zero.
MUST_SHOW = ("Studies per minute", "Slices per second", "Upload to result (p50, p95, p99)",
             "Stage time (p95)", "Queue depth", "HTTP latency (p95) by route",
             "Triton requests per second", "Triton queue and compute time per request",
             "Triton request time seen by the gateway (p95)", "Submissions per minute",
             "Bytes received", "Batch size")
MUST_RISE = ("Studies per minute", "Slices per second", "Upload to result (p50, p95, p99)",
             "Triton requests per second", "Submissions per minute", "Bytes received")


@pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None,
                    reason="no prometheus here: `make system-packages` installs Debian's")
def test_a_real_prometheus_answers_every_panel_and_evaluates_every_rule(
    triton_server: TritonEndpoint, tmp_path: Path
) -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (port,) = free_ports(1)
    process, gateway = start_gateway(triton_server.grpc_url, tmp_path / "data",
                                     BONEMETS_METRICS=f"port:{port}",
                                     BONEMETS_MODEL_NAME=triton_server.model_name)
    triton = urllib.parse.urlsplit(triton_server.metrics_url).netloc
    try:
        with running_prometheus(tmp_path / "prometheus", {
                "bonemets": [f"127.0.0.1:{port}"], "triton": [triton]}) as prometheus:
            # Both scraped once before the first study, so that every counter's rise is seen.
            prometheus.wait_for('up{job="bonemets"} == 1 and on() up{job="triton"} == 1')
            start = time.time()
            series = build_series(tmp_path / "series", slices=3, size=64)
            with gateway.client(timeout=120) as client:
                assert client.get("/readyz").status_code == 200
                for _ in range(STUDIES):
                    answer = client.post("/v1/studies", files=as_files(series.paths),
                                         params={"wait": 90})
                    assert answer.json()["state"] == "succeeded", answer.text
                    time.sleep(1.5)  # a scrape or two between studies: the lines move
            prometheus.wait_for(f'bonemets_studies_total{{outcome="succeeded"}} >= {STUDIES}')
            time.sleep(3)  # rate() wants two samples since the last study
            answers = {name: prometheus.api("query_range", query=expr, start=start - 5,
                                            end=time.time(), step=1)["result"]
                       for name, expr in panel_expressions().items()}
            groups = prometheus.api("rules")["groups"]
    finally:
        stop_gateway(process)
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {rule["alert"] for group in load_yaml(ALERTS)["groups"]
                          for rule in group["rules"]}
    assert {name: rule.get("lastError") for name, rule in rules.items()
            if rule["health"] != "ok"} == {}
    empty = [title for title in MUST_SHOW
             if not any(answers[name] for name in answers if name.startswith(f"{title}/"))]
    assert empty == [], f"panels with no data after {STUDIES} studies: {empty}"
    flat = [title for title in MUST_RISE
            if not any(float(v) > 0 for name, result in answers.items()
                       if name.startswith(f"{title}/") for one in result for _, v in one["values"])]
    assert flat == [], f"panels that stayed at zero: {flat}"
    picture = tmp_path / "dashboard.png"
    draw(dashboard()["panels"], answers, picture)
    if folder := os.environ.get("BONEMETS_SCREENSHOTS"):
        shutil.copy(picture, Path(folder) / "dashboard.png")

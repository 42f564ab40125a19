"""deploy/grafana, deploy/prometheus and docker compose's monitoring profile: they parse, and
they point at each other and at the services as the compose file names them. (Whether every
metric they name exists is tests/integration/test_monitoring.py's, against live scrapes.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.monitoring import (
    ALERTS,
    COMPOSE,
    DASHBOARD,
    PROMETHEUS,
    ROOT,
    alert_rules,
    dashboard,
    load_yaml,
    metric_names_in,
    names_used,
    panel_expressions,
)


def test_metric_names_are_read_out_of_promql() -> None:
    expression = ('histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{stage=~"x|y"}'
                  '[5m]))) / clamp_min(sum without (job) (b_total), 1e-9) > on (instance) c')
    assert metric_names_in(expression) == {"a_bucket", "b_total", "c"}
    assert metric_names_in("up == 0") == {"up"}


def test_the_dashboard_queries_one_prometheus_through_its_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
    titles = {p["title"] for p in panels}
    assert {"Studies per minute", "Slices per second", "Upload to result (p50, p95, p99)",
            "Queue depth", "Oldest queued job age", "Triton queue and compute time per request",
            "GPU utilisation", "HTTP error rate", "Triton errors"} <= titles
    used = names_used()
    for name in ("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
                 "nv_inference_request_success", "nv_inference_request_failure",
                 "nv_gpu_utilization", "bonemets_study_duration_seconds_bucket"):
        assert any(where.startswith("panel") for where in used[name]), name
    assert len(panel_expressions()) >= len(panels)


def test_every_alert_tells_the_operator_what_it_means() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {"BonemetsNotReady", "BonemetsHighErrorRate", "BonemetsQueueAgeHigh",
            "BonemetsDeliveriesFailing", "BonemetsWebhooksFailing", "TritonInferenceFailures",
            "BonemetsTritonErrors"} <= names
    assert len(names) == len(rules)
    documented = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert len(rule["annotations"]["summary"]) > 20
        assert len(rule["annotations"]["description"]) > 80
        assert f"`{rule['alert']}`" in documented, f"{rule['alert']} not in operations.md"


def test_the_monitoring_profile_mounts_the_files_and_scrapes_the_services() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", services[name]["image"]), name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    assert "profiles" not in services["gateway"] and "profiles" not in services["triton"]
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = load_yaml(PROMETHEUS)
    assert mounts["./deploy/prometheus/alerts.yml"] in config["rule_files"]
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in config["scrape_configs"]}
    port = services["gateway"]["environment"]["BONEMETS_METRICS"].removeprefix("port:")
    assert targets["bonemets"] == [f"gateway:{port}"]
    assert "8002:8002" in services["triton"]["ports"]  # Triton's default metrics port
    assert targets["triton"] == ["triton:8002"]
    grafana = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/bonemets.yml")
    folder = provider["providers"][0]["options"]["path"]
    assert grafana["./deploy/grafana/bonemets.json"] == f"{folder}/{DASHBOARD.name}"
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    source = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"]
    assert ALERTS.name in str(config["rule_files"])


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"],
                                        capture_output=True).returncode != 0:
        pytest.skip("no docker compose here; the YAML structure is checked above")
    checked = subprocess.run([docker, "compose", "--profile", "monitoring", "config", "-q"],
                             cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

"""``bonemets soak`` for 30 seconds, so that the soak and the locust users keep working.

The real soak (20 users, 5 minutes, the shipped model) is a benchmark: docs/benchmarks.md.
Here 4 users (one client allowed 1 study in flight, so 429s are met and waited out) send
small phantoms to the local service serving the zero-cost null model;
locust runs as a subprocess (importing it here would monkey-patch pytest with gevent). No
timing or memory figure is asserted: on 2 shared cores they mean nothing in 30 seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

from export.bench import soak

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUTES = {"/v1/studies [files]", "/v1/studies [zip]", "/v1/studies/{job_id}",
          "/v1/studies/{job_id} [delete]", "/v1/studies/{job_id}/slices/{index}/mask.png",
          "/v1/studies/{job_id}/slices/{index}/overlay.png", "upload-to-result"}


def _soak_args(tmp_path: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    soak.add_parser(parser.add_subparsers())
    return parser.parse_args([
        "soak", "--users", "4", "--duration", "30s", "--think", "0.5:1.5", "--null-model",
        "--studies", "2", "--slices", "8", "--size", "256", "--baseline-runs", "1",
        "--client-max-inflight", "1",
        "--out", str(tmp_path / "soak.json"), "--report-dir", str(tmp_path / "report"),
        "--cache-dir", str(tmp_path / "cache"), "--update-docs", str(tmp_path / "page.md"),
    ])


def test_a_short_soak_runs_clean_and_reports_every_figure(tmp_path: Path) -> None:
    assert "locust" not in sys.modules  # never in this process: gevent would patch it

    soak.run(_soak_args(tmp_path))  # its status also judges the memory slope: not here

    results = json.loads((tmp_path / "soak.json").read_text())
    load = results["load"]
    assert load["locust_exit_status"] == 0, load["failure_messages"]
    assert load["failures"] == 0 and load["failure_messages"] == []
    assert load["studies_succeeded"] >= 4 and load["studies_failed"] == 0
    assert ROUTES <= set(load["by_route"])  # named by route template, never by job URL
    assert not [name for name in load["by_route"] if re.search(r"[0-9a-f]{32}", name)]
    routes = {name: figures["requests"] for name, figures in load["by_route"].items()}
    uploads = routes["/v1/studies [files]"] + routes["/v1/studies [zip]"]
    uploads -= routes.get("429 Retry-After", 0)
    # Every round trip ran to its delete: the run's end lets users finish their study.
    assert routes["/v1/studies/{job_id} [delete]"] == uploads == load["studies_succeeded"]
    assert routes["upload-to-result"] == uploads
    # 4 users, 1 study in flight a client: uploads answered 429 are waited out and sent
    # again (each 429 also counts among the upload route's requests), never failures.
    assert routes["429 Retry-After"] >= 1
    assert 0 < load["p50_s"] <= load["p95_s"] <= load["max_s"]
    assert len(results["baseline"]["runs_s"]) == 1
    memory = results["memory"]
    assert len(memory["samples"]) >= 5 and memory["gateway_start_mb"] > 10
    assert memory["gateway_slope_mb_per_min"] is not None
    assert results["cleanup"] == {"left_over_deleted": results["cleanup"]["left_over_deleted"],
                                  "files_left": 0, "files_left_sample": []}
    assert results["settings"]["model"].startswith("bonemets_null")
    assert "locust" not in sys.modules
    report = tmp_path / "report"
    assert (report / "report.html").stat().st_size > 1000
    assert (report / "load_stats.csv").is_file()
    page = (tmp_path / "page.md").read_text()
    assert "## Soak: 4 uploaders for 0.5 minutes" in page and "| errors = 0 |" in page

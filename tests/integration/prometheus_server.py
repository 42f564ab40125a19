"""Debian's Prometheus (``make system-packages``), started on a free port in a temporary
folder, scraping the targets a test gives it every second with the shipped alert rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.integration.conftest import free_ports
from tests.monitoring import ALERTS

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


class Prometheus:
    """A running Prometheus's HTTP API."""

    def __init__(self, base: str) -> None:
        self.base = base

    def api(self, path: str, **params: str | float) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.base}/api/v1/{path}?{query}", timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]

    def wait_for(self, expr: str, timeout_s: float = 30) -> None:
        """Until ``expr`` has a sample (the targets have been scraped since what it counts)."""
        deadline = time.monotonic() + timeout_s
        while not self.api("query", query=expr)["result"]:
            assert time.monotonic() < deadline, f"no sample of {expr} in {timeout_s} s"
            time.sleep(0.5)


@contextmanager
def running_prometheus(folder: Path, targets: dict[str, Sequence[str]]) -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (job name -> host:port list) every second, with the
    alert rules of deploy/prometheus evaluated every second too."""
    assert PROMETHEUS is not None
    (port,) = free_ports(1)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                           for job, hosts in targets.items()],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "Prometheus did not become ready"
                time.sleep(0.2)
        yield Prometheus(base)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()

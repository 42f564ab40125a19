"""GET /metrics: what a study moves, under which labels; the backlog from the job database;
who may read it, and the listener of its own (BONEMETS_METRICS)."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.auth.principal import Scope
from api.config import Settings
from api.http.app import create_app
from api.study.job_rows import Page
from api.study.jobs import open_job_store
from api.tritonserver.launcher import free_ports
from tests.api.conftest import BuiltSeries, as_files, build_series, wait_finished
from tests.api.contract import CLIENT_SCOPES, CheckedClient, new_key
from tests.api.fakes import BrightBoneModel, DownModel
from tests.api.scrapes import Samples, counted, samples, value
from tests.api.test_authentication import assert_unauthenticated
from tests.api.test_dicomweb import STOW, related

CLIENT = "ris-metrics-7"
STAGES = ("upload", "header", "read", "decode", "inference", "postprocess", "write")


def scrape(client: TestClient) -> tuple[str, Samples]:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text, samples(answer.text)


@pytest.fixture
def small(tmp_path: Path) -> BuiltSeries:
    return build_series(tmp_path / "series", slices=3, size=64)


def watching(settings: Settings, model: BrightBoneModel) -> CheckedClient:
    """A client that submits, reads and scrapes, under a name the exposition must not hold."""
    return CheckedClient(create_app(settings, model_factory=lambda _: model),
                         scopes=(*CLIENT_SCOPES, Scope.METRICS), client_name=CLIENT)


def test_a_study_moves_its_counters_and_histograms(settings: Settings,
                                                   small: BuiltSeries) -> None:
    with watching(settings, BrightBoneModel()) as client:
        _, before = scrape(client)
        answer = client.post("/v1/studies", files=as_files(small.paths))
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        assert wait_finished(client, job_id)["state"] == "succeeded"
        text, after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("bonemets_submissions_total", entrance="upload", priority="routine") == 1
    assert moved("bonemets_received_bytes_total", entrance="upload") == sum(
        path.stat().st_size for path in small.paths)
    assert moved("bonemets_studies_total", outcome="succeeded", problem="none") == 1
    assert moved("bonemets_study_duration_seconds_count") == 1
    for stage in STAGES:
        assert moved("bonemets_stage_duration_seconds_count", stage=stage) == 1, stage
    assert moved("bonemets_slices_processed_total") == 3
    assert value(after, "bonemets_slices_in_flight") == 0
    assert moved("bonemets_http_requests_total", route="/v1/studies", method="POST",
                 status="202") == 1
    polls = moved("bonemets_http_requests_total", route="/v1/studies/{job_id}", method="GET",
                  status="200")
    assert polls >= 1
    assert moved("bonemets_http_request_duration_seconds_count", route="/v1/studies/{job_id}",
                 method="GET") == polls
    assert value(after, "bonemets_jobs_queued") == 0
    assert value(after, "bonemets_jobs_running") == 0
    assert value(after, "bonemets_oldest_queued_job_age_seconds") == 0
    # Bounded labels: no job id, no client, no raw path anywhere in the text.
    assert job_id not in text
    assert CLIENT not in text
    assert not re.search(r'route="[^"]*[0-9a-f]{32}', text)


def test_a_failed_study_is_counted_under_its_problem_slug(settings: Settings,
                                                          small: BuiltSeries) -> None:
    with watching(settings, DownModel()) as client:
        _, before = scrape(client)
        job_id = client.post("/v1/studies", files=as_files(small.paths)).json()["id"]
        job = wait_finished(client, job_id)
        assert client.get("/readyz").status_code == 503
        _, after = scrape(client)
    assert value(after, "bonemets_ready") == 0  # the probe's last word, for the alert
    assert job["state"] == "failed"
    slug = job["error"]["type"].rsplit(":", 1)[-1]
    assert slug == "inference-unavailable"
    labels = {"outcome": "failed", "problem": slug}
    assert value(after, "bonemets_studies_total", **labels) \
        - value(before, "bonemets_studies_total", **labels) == 1


def test_stow_rs_and_stat_studies_are_counted_under_their_entrance_and_priority(
    settings: Settings, small: BuiltSeries
) -> None:
    labels = {"entrance": "stow", "priority": "stat"}
    before = counted("bonemets_submissions_total", **labels)
    before_bytes = counted("bonemets_received_bytes_total", entrance="stow")
    body, headers = related([path.read_bytes() for path in small.paths])
    with watching(settings, BrightBoneModel()) as client:
        answer = client.post(f"{STOW}?priority=stat", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    assert counted("bonemets_submissions_total", **labels) - before == 1
    sent = sum(path.stat().st_size for path in small.paths)
    assert counted("bonemets_received_bytes_total", entrance="stow") - before_bytes == sent


def test_queue_depth_and_oldest_age_come_from_the_job_database(
    settings: Settings, small: BuiltSeries
) -> None:
    # An API replica queues and runs nothing: the jobs stay queued.
    api = settings.model_copy(update={"role": "api"})
    with watching(api, BrightBoneModel()) as client:
        for _ in range(2):
            assert client.post("/v1/studies", files=as_files(small.paths)).status_code == 202
        time.sleep(0.05)
        _, found = scrape(client)
    assert value(found, "bonemets_jobs_queued") == 2
    assert 0.05 <= value(found, "bonemets_oldest_queued_job_age_seconds") < 60
    # Another process reads the same database, and the same backlog, at a known time.
    jobs = open_job_store(api)
    try:
        oldest = min(job.created_at for job in jobs.page(Page(limit=10)))
        counts = jobs.backlog.counts(now=oldest + 42.0)
    finally:
        jobs.close()
    assert (counts.queued, counts.running, counts.oldest_queued_age_s) == (2, 0, 42.0)
    assert (counts.deliveries_pending, counts.webhooks_pending) == (0, 0)


def test_the_endpoint_asks_for_the_metrics_scope(settings: Settings) -> None:
    with CheckedClient(create_app(settings, model_factory=lambda _: BrightBoneModel()),
                       scopes=None) as client:
        assert_unauthenticated(client.get("/metrics"))
        for scopes, status in ((CLIENT_SCOPES, 403), ((Scope.METRICS,), 200),
                               ((Scope.ADMIN,), 200)):
            key = new_key(client, "scraper", scopes)
            with client.sending(f"Bearer {key}"):
                assert client.get("/metrics").status_code == status, scopes


def test_listed_open_the_endpoint_takes_no_credentials(settings: Settings) -> None:
    opened = settings.model_copy(update={"auth_open_paths": "/healthz,/readyz,/metrics"})
    with CheckedClient(create_app(opened, model_factory=lambda _: BrightBoneModel()),
                       scopes=None) as client:
        assert client.get("/metrics").status_code == 200
        assert_unauthenticated(client.get("/v1/studies"))


def test_on_a_port_of_its_own_and_off(settings: Settings) -> None:
    port, = free_ports(1)
    own = settings.model_copy(update={"metrics": f"port:{port}"})
    assert own.metrics_port == port
    with CheckedClient(create_app(own, model_factory=lambda _: BrightBoneModel())) as client:
        assert client.get("/metrics").status_code == 404  # not on the gateway's port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            found = samples(answer.read().decode())
        assert value(found, "bonemets_jobs_queued") == 0  # the backlog too
    with pytest.raises(OSError):  # stopped with the app
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    off = settings.model_copy(update={"metrics": "off"})
    with CheckedClient(create_app(off, model_factory=lambda _: BrightBoneModel())) as client:
        assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("setting", ["port", "port:", "port:0", "port:70000", "port:123456",
                                     "on", "route "])
def test_a_malformed_setting_is_refused(tmp_path: Path, setting: str) -> None:
    with pytest.raises(ValueError, match="metrics"):
        Settings(data_dir=tmp_path, metrics=setting)

"""API replicas and workers: an API process queues what it is sent and runs nothing; a worker
on the same job database and storage claims and runs it; each answers its own probes."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from api.config import Settings
from api.http.app import create_app
from tests.api.conftest import BuiltSeries, as_files, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel, DownModel


def role_settings(tmp_path: Path, role: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=2, role=role)


def test_an_api_replica_queues_and_a_worker_runs_what_it_queued(
        tmp_path: Path, series: BuiltSeries) -> None:
    api_model, worker_model = BrightBoneModel(), BrightBoneModel()
    api = create_app(role_settings(tmp_path, "api"), model_factory=lambda _: api_model)
    with CheckedClient(api, raise_server_exceptions=False) as client:
        queued = client.post("/v1/studies", files=as_files(series.paths))
        assert queued.status_code == 202
        job_id = queued.json()["id"]
        time.sleep(1.5)  # longer than a runner's poll: nobody here claims it
        assert client.get(f"/v1/studies/{job_id}").json()["state"] == "queued"
        assert api_model.calls == 0
        worker = create_app(role_settings(tmp_path, "worker"),
                            model_factory=lambda _: worker_model)
        # Not the published API: a worker's own probes, on a plain client.
        with TestClient(worker, raise_server_exceptions=False) as probes:
            done = wait_finished(client, job_id)  # read through the API replica
            assert probes.get("/readyz").json() == {"status": "ok", "detail": None}
            missing = probes.get(f"/v1/studies/{job_id}")  # no such route on a worker
            assert missing.status_code == 404
            assert missing.json()["type"] == "urn:bonemets:problem:not-found"
    assert done["state"] == "succeeded" and len(done["result"]["lesions"]) == 1
    assert worker_model.calls > 0 and api_model.calls == 0


def test_an_api_replica_is_ready_without_a_model_and_a_worker_is_not(tmp_path: Path) -> None:
    for role, expected in (("api", 200), ("worker", 503), ("all", 503)):
        app = create_app(role_settings(tmp_path / role, role),
                         model_factory=lambda _: DownModel())
        with TestClient(app, raise_server_exceptions=False) as client:
            ready = client.get("/readyz")
            assert ready.status_code == expected, (role, ready.text)
            assert client.get("/healthz").status_code == 200

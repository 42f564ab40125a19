"""Priorities: a stat study is taken before the routine studies waiting, however late it was
sent; the job document says which it is."""

from __future__ import annotations

from pathlib import Path

from api.config import Settings
from api.http.app import create_app
from tests.api.conftest import BuiltSeries, as_files, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import GatedModel


def test_a_stat_study_sent_last_finishes_before_the_routine_ones_waiting(
        tmp_path: Path, series: BuiltSeries) -> None:
    settings = Settings(data_dir=tmp_path / "data", decode_workers=1, batch_size=8,
                        concurrent_jobs=1, client_max_inflight=10)
    model = GatedModel()  # the first study waits at the model until every study is queued
    app = create_app(settings, model_factory=lambda _: model)
    with CheckedClient(app, raise_server_exceptions=False) as client:
        routine = [client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
                   for _ in range(4)]
        stat = client.post("/v1/studies?priority=stat", files=as_files(series.paths)).json()
        assert stat["priority"] == "stat" and stat["state"] == "queued"
        model.gate.set()
        finished = {job_id: wait_finished(client, job_id) for job_id in [*routine, stat["id"]]}
        refused = client.post("/v1/studies?priority=urgent", files=as_files(series.paths))
    assert refused.status_code == 422
    done_at = {job_id: job["updated_at"] for job_id, job in finished.items()}
    assert all(job["state"] == "succeeded" for job in finished.values())
    assert [finished[job_id]["priority"] for job_id in routine] == ["routine"] * 4
    # Only the routine study already running when stat came ends before it.
    before_stat = [job_id for job_id in routine if done_at[job_id] < done_at[stat["id"]]]
    assert before_stat == routine[:1], done_at

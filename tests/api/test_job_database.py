"""The app on its job database (SQLite, or PostgreSQL under BONEMETS_TEST_DATABASE=postgres):
rows where the settings say, and gateways sharing one database sharing its jobs."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from api.config import Settings
from api.http.app import create_app
from api.study.jobs import JobState, open_job_store
from api.study.schema import MIGRATIONS
from tests.api.conftest import BuiltSeries, as_files, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel


def test_job_rows_are_in_the_configured_database(client: TestClient, settings: Settings,
                                                 series: BuiltSeries,
                                                 job_database: str | None) -> None:
    job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
    assert job["state"] == "succeeded"
    sqlite_file = settings.data_dir / "jobs.sqlite"
    if job_database is None:
        assert settings.database_url is None and sqlite_file.is_file()
        return
    assert settings.database_url == job_database and not sqlite_file.exists()
    with psycopg.connect(job_database) as conn:
        row = conn.execute("SELECT state, attempts FROM jobs WHERE id = %s",
                           (job["id"],)).fetchone()
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert row == ("succeeded", 1)
    assert versions == [(m.version,) for m in MIGRATIONS]


def test_a_study_one_gateway_gives_back_is_finished_by_another(tmp_path: Path,
                                                               series: BuiltSeries) -> None:
    settings = Settings(data_dir=tmp_path / "d", decode_workers=1, batch_size=1,
                        inflight_batches=1)
    first = CheckedClient(create_app(settings, model_factory=lambda _: BrightBoneModel(
        delay_s=5.0)))
    first.__enter__()
    stopped = False
    try:
        job_id = first.post("/v1/studies", files=as_files(series.paths)).json()["id"]
        deadline = time.monotonic() + 20
        while first.get(f"/v1/studies/{job_id}").json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = CheckedClient(create_app(settings, model_factory=lambda _: BrightBoneModel()))
        with second:
            time.sleep(1.5)  # the second gateway's workers look, and find the job held
            assert second.get(f"/v1/studies/{job_id}").json()["state"] == "running"
            first.__exit__(None, None, None)  # stops cleanly: the job is given back
            stopped = True
            job = wait_finished(second, job_id)
    finally:
        if not stopped:
            first.__exit__(None, None, None)
    assert job["state"] == "succeeded", job
    assert job["result"]["lesions"][0]["slice_range"] == [2, 3]
    jobs = open_job_store(settings)
    row = jobs.get(job_id)
    jobs.close()
    assert row is not None and (row.state, row.attempts) == (JobState.SUCCEEDED, 2)

"""Studies decoded at once share the decode pool's shared-memory slots without mixing up
their slices: each result equals the same study's result run alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api.config import Settings
from api.http.app import create_app
from tests.api.conftest import as_files, build_series, wait_finished
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel


def _findings(job: dict[str, Any]) -> tuple[Any, ...]:
    result = job["result"]
    return (result["lesions"], [(s["index"], s["boxes"]) for s in result["slices"]])


def _settings(folder: Path, jobs: int) -> Settings:
    # One slice a batch and two batches in flight a job: four slots reused by twelve batches.
    return Settings(data_dir=folder, decode_workers=2, batch_size=1, inflight_batches=2,
                    concurrent_jobs=jobs, client_max_inflight=10)


def test_two_studies_at_once_each_get_their_own_result(tmp_path: Path) -> None:
    first = build_series(tmp_path / "first", seed=1, lesion_slices=(1, 2))
    second = build_series(tmp_path / "second", seed=2, lesion_slices=(3, 4))
    alone = {}
    app = create_app(_settings(tmp_path / "alone", 1), model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app) as client:
        for name, series in (("first", first), ("second", second)):
            job = client.post("/v1/studies?wait=60", files=as_files(series.paths)).json()
            assert job["state"] == "succeeded", job
            alone[name] = _findings(job)
    assert alone["first"] != alone["second"]

    app = create_app(_settings(tmp_path / "together", 2),
                     model_factory=lambda _: BrightBoneModel(delay_s=0.02))
    with CheckedClient(app) as client:
        ids = {name: client.post("/v1/studies", files=as_files(series.paths)).json()["id"]
               for name, series in (("first", first), ("second", second))}
        for name, job_id in ids.items():
            job = wait_finished(client, job_id)
            assert job["state"] == "succeeded", job
            assert _findings(job) == alone[name]

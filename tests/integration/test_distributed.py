"""Past one machine, on this one: 2 API processes and 2 workers on one PostgreSQL and one S3
(SeaweedFS), in front of one tritonserver, every part real and in its own process.

Twenty phantom studies are posted round-robin to both APIs; a worker is killed with SIGKILL
while it runs a study, and an API process is killed and started again. Every study must end
succeeded exactly once (one worker's "succeeded" line each), with the results and masks the
single process gives on SQLite and disk, and nothing may be left behind after DELETE.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.auth.keys import open_key_store
from tests.integration.conftest import TritonEndpoint, free_ports, wait_http_ok
from tests.seaweedfs import SeaweedS3

pytestmark = pytest.mark.integration

STUDIES = 20
PEPPER = "3c" * 32
SCOPES = ("studies:write", "studies:read", "studies:delete")


@dataclass
class Process:
    role: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """Gateway processes sharing one environment (database, store, Triton, link keys)."""

    root: Path
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def start(self, role: str, port: int | None = None) -> Process:
        (port,) = (port,) if port is not None else free_ports(1)
        number = len(self.processes)
        log = self.root / f"{role}-{number}.log"
        data_dir = self.root / f"{role}-{number}"
        popen = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--role", role, "--port", str(port),
             "--data-dir", str(data_dir)],
            env=self.env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        process = Process(role, port, log, popen)
        self.processes.append(process)
        wait_http_ok(f"{process.base}/readyz", popen, timeout=90)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()


def environment(triton: TritonEndpoint, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BONEMETS_", "AWS_"))},
        "BONEMETS_TRITON_URL": triton.grpc_url, "BONEMETS_MODEL_NAME": triton.model_name,
        "BONEMETS_TRITON_SHARED_MEMORY": "off", "BONEMETS_DECODE_WORKERS": "1",
        "BONEMETS_CONCURRENT_JOBS": "1", "BONEMETS_BATCH_SIZE": "2",
        "BONEMETS_INFLIGHT_BATCHES": "1", "BONEMETS_CLIENT_MAX_INFLIGHT": "100",
        "BONEMETS_CLIENT_UPLOADS_PER_MINUTE": "1000",
        "BONEMETS_LINK_KEYS": "distributed-test-link-key-0123456789abcdef",
        "PYTHONUNBUFFERED": "1", **extra,
    }


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Twenty small phantom studies with a lesion each, as files."""
    from export.phantoms import make_phantom, sample_spec, write_study

    root = tmp_path_factory.mktemp("studies")
    written = []
    for k in range(STUDIES):
        spec = sample_spec(500 + k, slices=8, size=256, encoding="none", n_lesions=1)
        study = write_study(make_phantom(spec), root / f"study{k}")
        written.append(sorted((study / "dicom").glob("*.dcm")))
    return written


def files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (p.name, p.read_bytes(), "application/dicom")) for p in paths]


def comparable(job: dict[str, Any], client: httpx.Client) -> dict[str, Any]:
    """A result without what differs between runs (timings, signed links), with the hash of
    every positive slice's mask PNG instead of its link."""
    result = dict(job["result"])
    result.pop("timings")
    slices = []
    for entry in result.pop("slices"):
        mask = client.get(entry["mask_url"]) if entry["boxes"] else None
        if mask is not None:
            assert mask.status_code == 200, mask.text
        slices.append({**{k: v for k, v in entry.items() if not k.endswith("_url")},
                       "mask": hashlib.sha256(mask.content).hexdigest() if mask else None})
    return {**result, "slices": slices}


def key_for(data_dir: Path, database_url: str | None) -> str:
    """A key in the store the gateways read: the data directory's, or the shared database's."""
    store = open_key_store(data_dir, database_url, PEPPER if database_url else None)
    try:
        return store.create("router", SCOPES)[1]
    finally:
        store.close()


@pytest.fixture
def single_process_results(triton_server: TritonEndpoint, studies: list[list[Path]],
                           tmp_path: Path) -> list[dict[str, Any]]:
    """What one process on SQLite and the data directory answers for each study."""
    root = tmp_path / "single"
    root.mkdir()
    cluster = Cluster(root, environment(triton_server))
    try:
        key = key_for(root / "all-0", None)  # the data directory start() gives it
        process = cluster.start("all")
        with httpx.Client(base_url=process.base, timeout=120,
                          headers={"Authorization": f"Bearer {key}"}) as client:
            results = []
            for paths in studies:
                job = client.post("/v1/studies?wait=120", files=files(paths)).json()
                assert job["state"] == "succeeded", job
                results.append(comparable(job, client))
        return results
    finally:
        cluster.stop_all()


@pytest.fixture
def distributed(triton_server: TritonEndpoint, postgres_url: str, seaweedfs: SeaweedS3,
                tmp_path: Path) -> Iterator[tuple[Cluster, str, str]]:
    root = tmp_path / "distributed"
    root.mkdir()
    prefix = seaweedfs.new_prefix()
    env = environment(triton_server, BONEMETS_DATABASE_URL=postgres_url,
                      BONEMETS_KEY_PEPPER=PEPPER, BONEMETS_JOB_LEASE_S="4",
                      BONEMETS_JOB_HEARTBEAT_S="1", **seaweedfs.environment(prefix))
    cluster = Cluster(root, env)
    try:
        yield cluster, key_for(root, postgres_url), prefix
    finally:
        cluster.stop_all()


def test_two_apis_and_two_workers_survive_a_killed_worker_and_api(
        distributed: tuple[Cluster, str, str], single_process_results: list[dict[str, Any]],
        studies: list[list[Path]], postgres_url: str, seaweedfs: SeaweedS3) -> None:
    cluster, key, prefix = distributed
    apis = [cluster.start("api"), cluster.start("api")]
    doomed, survivor = cluster.start("worker"), cluster.start("worker")
    headers = {"Authorization": f"Bearer {key}"}
    job_ids: list[str] = []
    killed_job = None
    for k, paths in enumerate(studies):
        if k == STUDIES // 2:  # an API process dies between two uploads, and comes back
            apis[1].popen.kill()
            apis[1].popen.wait()
            apis[1] = cluster.start("api", port=apis[1].port)
        answer = httpx.post(f"{apis[k % 2].base}/v1/studies", files=files(paths),
                            headers=headers, timeout=60)
        assert answer.status_code == 202, answer.text
        job_ids.append(answer.json()["id"])
        if killed_job is None and k >= 3:
            killed_job = _kill_while_running(doomed, postgres_url)
    assert killed_job is not None, "the doomed worker never held a running job"
    with httpx.Client(base_url=apis[0].base, headers=headers, timeout=60) as client:
        jobs = [_finished(client, job_id) for job_id in job_ids]
        assert [job["state"] for job in jobs] == ["succeeded"] * STUDIES
        assert [comparable(job, client) for job in jobs] == single_process_results
        succeeded_lines = _succeeded_lines([doomed, survivor])
        assert sorted(succeeded_lines) == sorted(job_ids)  # each exactly once, by one worker
        attempts = _attempts(postgres_url)
        assert attempts[killed_job] >= 2  # claimed again once the dead worker's lease ran out
        for job_id in job_ids:
            assert client.delete(f"/v1/studies/{job_id}").status_code == 204
    assert seaweedfs.keys(prefix) == []
    assert _attempts(postgres_url) == {}


def _kill_while_running(worker: Process, database_url: str, timeout_s: float = 60) -> str | None:
    """SIGKILL ``worker`` while it holds a running job; the job's id."""
    pid = f":{worker.popen.pid}:"
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as db:
        while time.monotonic() < deadline:
            row = db.execute("SELECT id FROM jobs WHERE state = 'running' AND worker LIKE %s"
                             " AND slices_done > 0", (f"%{pid}%",)).fetchone()
            if row is not None:
                worker.popen.kill()
                worker.popen.wait()
                return str(row[0])
            time.sleep(0.01)
    return None


def _finished(client: httpx.Client, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/studies/{job_id}").json()
        if job["state"] in ("succeeded", "failed"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished in {timeout_s} s")


def _succeeded_lines(workers: list[Process]) -> list[str]:
    found = []
    for worker in workers:
        found += re.findall(r"job ([0-9a-f]{32}) succeeded", worker.log.read_text())
    return found


def _attempts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as db:
        return {str(row[0]): int(row[1])
                for row in db.execute("SELECT id, attempts FROM jobs").fetchall()}

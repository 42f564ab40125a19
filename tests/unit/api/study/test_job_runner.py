"""The job runner on both databases: it claims from the store, keeps its lease while a job
runs, resumes a dead worker's job once the lease runs out, gives up after max attempts, stops
a job taken over or deleted elsewhere, and gives its jobs back when it stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from api.errors import Interrupted
from api.study.jobs import Job, JobState, JobStore
from api.study.runner import JobRunner, Leases
from tests.unit.api.study.conftest import OpenStore

FAST = Leases(lease_s=0.6, heartbeat_s=0.1, max_attempts=3)


class Pipeline:
    """Runs a job for ``seconds``, noting which jobs ran, finished or were cancelled."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    async def run(self, job_id: str) -> None:
        self.started.append(job_id)
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled.append(job_id)
            raise
        self.finished.append(job_id)


async def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def running(jobs: JobStore, pipeline: Pipeline, body: Callable[[JobRunner],
            Awaitable[None]], **options: object) -> None:
    """Run ``body`` with a started runner of ``pipeline`` over ``jobs``; stop it after."""

    async def main() -> None:
        runner = JobRunner(jobs, pipeline.run, 1, leases=FAST, **options)  # type: ignore[arg-type]
        runner.start()
        try:
            await body(runner)
        finally:
            await runner.stop()

    asyncio.run(main())


def state(jobs: JobStore, job_id: str) -> Job:
    job = jobs.get(job_id)
    assert job is not None
    return job


def test_a_submitted_job_runs_and_succeeds(jobs: JobStore) -> None:
    pipeline = Pipeline()

    async def body(runner: JobRunner) -> None:
        jobs.create("j")
        runner.submit("j")
        assert await runner.wait("j", 10)

    running(jobs, pipeline, body)
    done = state(jobs, "j")
    assert (done.state, done.attempts, done.error) == (JobState.SUCCEEDED, 1, None)
    assert pipeline.finished == ["j"]


def test_a_dead_worker_s_job_runs_again_once_its_lease_runs_out(jobs: JobStore) -> None:
    jobs.create("j")
    jobs.claim("dead", lease_s=0.5)
    pipeline = Pipeline()

    async def body(runner: JobRunner) -> None:
        await asyncio.sleep(0.2)
        assert pipeline.started == []  # the lease still holds
        assert await runner.wait("j", 10)

    running(jobs, pipeline, body)
    done = state(jobs, "j")
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)
    assert done.worker not in (None, "dead")


def test_a_job_tried_too_often_fails_with_its_reason(jobs: JobStore) -> None:
    jobs.create("j")
    for n in range(3):
        jobs.claim(f"dead{n}", lease_s=-1)  # each worker died at once
    pipeline = Pipeline()

    async def body(runner: JobRunner) -> None:
        assert await runner.wait("j", 10)

    running(jobs, pipeline, body)
    failed = state(jobs, "j")
    assert failed.state is JobState.FAILED and failed.error is not None
    assert (failed.error.type, failed.error.status) == (Interrupted.type_uri, 503)
    assert "3 times" in failed.error.detail
    assert pipeline.started == []


def test_a_job_whose_upload_is_gone_fails_without_running(jobs: JobStore) -> None:
    jobs.create("j")
    pipeline = Pipeline()

    async def body(runner: JobRunner) -> None:
        assert await runner.wait("j", 10)

    running(jobs, pipeline, body, has_upload=lambda _: False)
    failed = state(jobs, "j")
    assert failed.error is not None and "upload" in failed.error.detail
    assert pipeline.started == []


def test_heartbeats_keep_a_long_job_from_other_workers(open_store: OpenStore) -> None:
    jobs, other = open_store(), open_store()
    jobs.create("j")
    pipeline = Pipeline(seconds=1.5)  # more than twice the lease

    async def body(runner: JobRunner) -> None:
        await until(lambda: pipeline.started == ["j"])
        while not pipeline.finished:
            assert other.claim("other", lease_s=30) is None
            await asyncio.sleep(0.1)
        assert await runner.wait("j", 10)

    running(jobs, pipeline, body)
    done = state(jobs, "j")
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1)


def test_a_job_taken_over_elsewhere_stops_here_and_keeps_the_other_s_state(
        open_store: OpenStore) -> None:
    jobs, other = open_store(), open_store()
    jobs.create("j")
    pipeline = Pipeline(seconds=30)

    async def body(runner: JobRunner) -> None:
        await until(lambda: pipeline.started == ["j"])
        with other.transaction() as cur:  # as if its lease had run out and "other" claimed it
            cur.execute("UPDATE jobs SET worker = ? WHERE id = ?", ("other", "j"))
        await until(lambda: pipeline.cancelled == ["j"])

    running(jobs, pipeline, body)
    held = state(jobs, "j")
    assert (held.state, held.worker, held.error) == (JobState.RUNNING, "other", None)


def test_a_job_deleted_elsewhere_stops_at_the_next_heartbeat(open_store: OpenStore) -> None:
    jobs, other = open_store(), open_store()
    jobs.create("j")
    pipeline = Pipeline(seconds=30)

    async def body(runner: JobRunner) -> None:
        await until(lambda: pipeline.started == ["j"])
        assert other.delete("j")
        await until(lambda: pipeline.cancelled == ["j"], timeout_s=2)

    running(jobs, pipeline, body)
    assert jobs.get("j") is None


def test_a_job_deleted_here_is_cancelled_and_not_given_back(jobs: JobStore) -> None:
    jobs.create("j")
    pipeline = Pipeline(seconds=30)

    async def body(runner: JobRunner) -> None:
        await until(lambda: pipeline.started == ["j"])
        await runner.cancel("j")
        assert pipeline.cancelled == ["j"]
        held = state(jobs, "j")  # the route deletes the row next; nobody claims it meanwhile
        assert (held.state, held.worker) == (JobState.RUNNING, runner.name)

    running(jobs, pipeline, body)


def test_a_stopping_runner_gives_its_job_back_for_the_next_to_finish(jobs: JobStore) -> None:
    jobs.create("j")
    slow = Pipeline(seconds=30)

    async def stopped_midway(runner: JobRunner) -> None:
        await until(lambda: slow.started == ["j"])

    running(jobs, slow, stopped_midway)
    given_back = state(jobs, "j")
    assert (given_back.state, given_back.worker, given_back.attempts) == (
        JobState.QUEUED, None, 1)
    quick = Pipeline()

    async def resumed(runner: JobRunner) -> None:
        assert await runner.wait("j", 10)

    running(jobs, quick, resumed)
    done = state(jobs, "j")
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)


def test_a_runner_stopped_while_claiming_gives_back_what_the_claim_took(
        jobs: JobStore) -> None:
    jobs.create("j")
    claim = jobs.claim

    def slow_claim(worker: str, lease_s: float) -> Job | None:
        taken = claim(worker, lease_s)  # committed; the answer is late
        time.sleep(0.5)
        return taken

    jobs.claim = slow_claim  # type: ignore[method-assign]
    pipeline = Pipeline()

    async def stopped_while_claiming(runner: JobRunner) -> None:
        await until(lambda: state(jobs, "j").state is JobState.RUNNING)

    running(jobs, pipeline, stopped_while_claiming)
    given_back = state(jobs, "j")
    assert (given_back.state, given_back.worker) == (JobState.QUEUED, None)
    assert pipeline.started == []

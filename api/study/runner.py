"""Runs queued study jobs: a few workers, each taking one job at a time through the pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from api.errors import BoneMetsError, Interrupted
from api.study.jobs import JobError, JobStore
from api.study.storage import StudyStore

log = logging.getLogger(__name__)

JobFunction = Callable[[str], Awaitable[None]]
# The destinations a client's results go to (api/delivery), by the job's owner.
Routing = Callable[[str | None], Sequence[str]]


def job_error(exc: BaseException) -> JobError:
    """What a failed job reports: the problem a client would have got, without internals."""
    error = exc if isinstance(exc, BoneMetsError) else BoneMetsError(
        f"processing stopped on an unexpected {type(exc).__name__}; it has been logged"
    )
    return JobError(error.type_uri, error.title, error.status, error.detail)


class JobRunner:
    """A bounded pool of asyncio workers fed by a queue of job ids."""

    def __init__(self, jobs: JobStore, process: JobFunction, workers: int,
                 deliver_to: Routing = lambda _: (),
                 on_success: Callable[[], None] = lambda: None) -> None:
        self._jobs = jobs
        self._process = process
        self._deliver_to = deliver_to
        self._on_success = on_success
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._done: dict[str, asyncio.Event] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"job-worker-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def resume_unfinished(self, store: StudyStore, max_attempts: int = 3) -> None:
        """Queue again the jobs a previous process left unfinished, or fail them with a reason."""
        for job in self._jobs.unfinished():
            if job.attempts >= max_attempts or not store.exists(job.id):
                self._jobs.fail(job.id, job_error(Interrupted(
                    f"the service stopped during this job {job.attempts} times; upload it again"
                )))
                continue
            log.info("resuming job %s after a restart", job.id)
            self._jobs.requeue(job.id)
            self.submit(job.id)

    def submit(self, job_id: str) -> None:
        self._done.setdefault(job_id, asyncio.Event())
        self._queue.put_nowait(job_id)

    async def wait(self, job_id: str, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a job this process runs; True when it finished."""
        event = self._done.get(job_id)
        if event is None:
            job = self._jobs.get(job_id)
            return job is not None and job.state.finished
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def cancel(self, job_id: str) -> None:
        """Stop a job this process is running (it is being deleted)."""
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            task = asyncio.create_task(self._run_one(job_id), name=f"job-{job_id}")
            self._running[job_id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    task.cancel()  # the worker itself is stopping
                    raise
            finally:
                self._running.pop(job_id, None)
                self._queue.task_done()

    async def _run_one(self, job_id: str) -> None:
        try:
            job = self._jobs.get(job_id)
            if job is None:
                return  # deleted while queued
            await self._process(job_id)
            self._jobs.succeed(job_id, self._deliver_to(job.owner))
            log.info("job %s succeeded", job_id)
            self._on_success()
        except asyncio.CancelledError:
            # Deleted, or shutting down: a job still in SQLite is resumed at start-up.
            raise
        except Exception as exc:  # every failure ends as a failed job, never a stuck one
            error = job_error(exc)
            if not isinstance(exc, BoneMetsError):
                log.exception("job %s failed unexpectedly", job_id)
            else:
                log.info("job %s failed: %s", job_id, error.type)
            if self._jobs.get(job_id) is not None:
                self._jobs.fail(job_id, error)
        finally:
            event = self._done.pop(job_id, None)
            if event is not None:
                event.set()

"""Runs study jobs: a few workers, each claiming one job at a time from the job store and
holding its lease with heartbeats while the pipeline runs it.

The same code runs on SQLite and on PostgreSQL, in one process or in many: every worker
claims from the store (``submit`` only wakes the idle ones; they also look every ``POLL_S``
for jobs queued by other processes and for leases that ran out). A worker that stops cleanly
gives its job back at once; one that dies keeps it until its lease runs out, and another
worker, here or elsewhere, then claims it. That is how a restart resumes unfinished jobs on
either database: no start-up requeue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass

from api import logs, metrics
from api.errors import BoneMetsError, Interrupted
from api.study.jobs import Job, JobError, JobStore

log = logging.getLogger(__name__)

JobFunction = Callable[[str], Awaitable[None]]
# The destinations a client's results go to (api/delivery), by the job's owner.
Routing = Callable[[str | None], Sequence[str]]
POLL_S = 1.0  # how often an idle worker looks for work it was not woken for


@dataclass(frozen=True)
class Callbacks:
    """Where a job's end is announced (the webhooks of api/delivery), and what to wake then."""

    url_of: Callable[[Job], str | None] = lambda _: None
    wake: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Leases:
    """How long a claim lasts unrenewed, how often it is renewed, how often a job is tried."""

    lease_s: float = 30.0
    heartbeat_s: float = 10.0
    max_attempts: int = 3


def job_error(exc: BaseException) -> JobError:
    """What a failed job reports: the problem a client would have got, without internals."""
    error = exc if isinstance(exc, BoneMetsError) else BoneMetsError(
        f"processing stopped on an unexpected {type(exc).__name__}; it has been logged"
    )
    return JobError(error.type_uri, error.title, error.status, error.detail)


def worker_name() -> str:
    """This process's name in the ``worker`` column: host, process, and a nonce for reuse."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class JobRunner:
    """A bounded pool of asyncio workers claiming jobs from the store."""

    def __init__(self, jobs: JobStore, process: JobFunction, workers: int, *,
                 leases: Leases = Leases(),
                 deliver_to: Routing = lambda _: (),
                 on_success: Callable[[], None] = lambda: None,
                 callbacks: Callbacks = Callbacks(),
                 has_upload: Callable[[str], bool] = lambda _: True) -> None:
        self._jobs = jobs
        self._process = process
        self._leases = leases
        self._deliver_to = deliver_to
        self._on_success = on_success
        self._callbacks = callbacks
        self._has_upload = has_upload
        self._workers = workers
        self.name = worker_name()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._deleted: set[str] = set()
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()  # set, then replaced, each time a job ends here

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"job-worker-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        """Stop the workers; the jobs they ran are given back for any worker to claim."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._tasks = []

    def submit(self, job_id: str) -> None:
        """A job was queued: wake an idle worker to claim it now (whichever job is oldest)."""
        self._wake.set()

    async def wait(self, job_id: str, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a job, run here or by another process; True when it
        finished (or is gone)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            job = self._jobs.get(job_id)
            if job is None or job.state.finished:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            with suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), min(left, POLL_S))

    async def cancel(self, job_id: str) -> None:
        """Stop a job this process is running (it is being deleted); a worker elsewhere
        notices at its next heartbeat."""
        task = self._running.get(job_id)
        if task is not None:
            self._deleted.add(job_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            self._wake.clear()  # before the claim: a submit from now on wakes the wait below
            try:
                job = await self._claim()
            except Exception as exc:  # the database is away: try again, never stop working
                log.warning("cannot claim jobs: %s", exc)
                job = None
            if job is None:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
                continue
            await self._hold(job)

    async def _claim(self) -> Job | None:
        claiming = asyncio.ensure_future(
            asyncio.to_thread(self._jobs.claim, self.name, self._leases.lease_s))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # Stopped while the claim ran: what it took goes back, not to wait out its lease.
            with suppress(Exception):
                job = await claiming
                if job is not None:
                    self._give_back(job.id)
            raise

    async def _hold(self, job: Job) -> None:
        """Run a claimed job, renewing its lease until it ends."""
        with logs.working_on(job.id, job.owner):  # both tasks' lines name the job
            task = asyncio.create_task(self._run_one(job), name=f"job-{job.id}")
            self._running[job.id] = task
            heartbeat = asyncio.create_task(self._heartbeat(job.id, task))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                task.cancel()  # the worker itself is stopping; stop() waits for the job
                raise
        finally:
            heartbeat.cancel()
            if task.done():
                self._running.pop(job.id, None)
                self._deleted.discard(job.id)

    async def _heartbeat(self, job_id: str, task: asyncio.Task[None]) -> None:
        while not task.done():
            await asyncio.sleep(self._leases.heartbeat_s)
            try:
                held = await asyncio.to_thread(
                    self._jobs.renew, job_id, self.name, self._leases.lease_s)
            except Exception as exc:  # keep trying: the lease may still outlast the outage
                log.warning("cannot renew the lease of job %s: %s", job_id, exc)
                continue
            if not held:
                log.warning("job %s was deleted or taken over by another worker; stopping it"
                            " here", job_id)
                task.cancel()
                return

    async def _run_one(self, job: Job) -> None:
        try:
            if job.attempts > self._leases.max_attempts:
                await self._fail(job, Interrupted(
                    f"processing stopped during this job {job.attempts - 1} times (the service"
                    " restarted or its worker was lost); upload it again"))
                return
            if not await asyncio.to_thread(self._has_upload, job.id):
                await self._fail(job, Interrupted("the upload of this job is gone; upload"
                                                  " it again"))
                return
            await self._process(job.id)
            if await asyncio.to_thread(self._jobs.succeed, job.id, self._deliver_to(job.owner),
                                       self.name, self._callbacks.url_of(job)):
                log.info("job %s succeeded", job.id)
                metrics.studies.labels("succeeded", "none").inc()
                metrics.study_duration.observe(max(time.time() - job.created_at, 0.0))
                self._on_success()
                self._callbacks.wake()
            else:
                log.warning("job %s finished after its lease passed on: outcome dropped", job.id)
        except asyncio.CancelledError:
            if job.id not in self._deleted:
                self._give_back(job.id)
            raise
        except Exception as exc:  # every failure ends as a failed job, never a stuck one
            if not isinstance(exc, BoneMetsError):
                log.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, exc)
        finally:
            self._finished.set()
            self._finished = asyncio.Event()

    def _give_back(self, job_id: str) -> None:
        """Stopping (or lost to another worker, then this changes nothing): queued again."""
        try:
            self._jobs.release(job_id, self.name)
        except Exception as exc:  # its lease runs out instead
            log.warning("cannot give job %s back: %s", job_id, exc)

    async def _fail(self, job: Job, exc: BaseException) -> None:
        error = job_error(exc)
        if await asyncio.to_thread(self._jobs.fail, job.id, error, self.name,
                                   self._callbacks.url_of(job)):
            log.info("job %s failed: %s", job.id, error.type)
            metrics.studies.labels("failed", metrics.problem_slug(error.type)).inc()
            self._callbacks.wake()
        else:
            log.warning("job %s failed after its lease passed on: outcome dropped", job.id)

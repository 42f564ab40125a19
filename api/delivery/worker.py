"""The delivery loop: due rows of the ledger sent (the SEG and SR to a PACS, the FHIR Bundle
to a FHIR server), each attempt's outcome recorded.

Runs in the gateway's event loop; each attempt runs in a thread (network and DICOM encoding).
A failure for now is tried again after a backoff that doubles from ``delivery_backoff_s`` up
to ``delivery_backoff_max_s``, until ``delivery_give_up_h`` after the job's success; then, or
at once for objects refused as sent, the delivery is failed with its reason. The job stays
succeeded whatever happens here, and a restart picks up what is still pending.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset

from api import logs, metrics
from api.config import Settings
from api.delivery.cstore import c_store
from api.delivery.destinations import (
    AnyDestination,
    Destinations,
    FhirDestination,
    StowDestination,
)
from api.delivery.failures import DeliveryFailed
from api.delivery.fhir import post_transaction
from api.delivery.stow import stow
from api.errors import BoneMetsError
from api.study.deliveries import Delivery
from api.study.fhir import transaction_json
from api.study.jobs import JobStore
from api.study.reports import report_files
from api.study.storage import StudyStore

log = logging.getLogger(__name__)

IDLE_POLL_S = 1.0  # a resend, or another process's success, is seen within this
# How long a claimed delivery is this process's: longer than an attempt can take (its
# association and two stores, each bounded by the destination's timeout_s).
ATTEMPT_LEASE_S = 600.0


def backoff_s(attempts: int, first_s: float, most_s: float) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling, capped, with jitter so
    that deliveries queued behind a PACS outage do not all return in the same second."""
    wait = min(first_s * 2.0 ** max(attempts - 1, 0), most_s)
    return wait * random.uniform(0.8, 1.0)


@dataclass(frozen=True)
class Payload:
    """What one destination is sent for a job: the SEG and SR (DICOM destinations) or the
    Bundle (a FHIR server), the names the job document lists, and a note on what was left
    out."""

    objects: tuple[str, ...]
    datasets: tuple[Dataset, ...] = ()
    bundle: bytes = b""
    note: str | None = None


def payload(store: StudyStore, jobs: JobStore, destination: AnyDestination, job_id: str,
            settings: Settings) -> Payload:
    """What ``destination`` is sent for finished job ``job_id``; BoneMetsError when its result
    is gone."""
    if isinstance(destination, FhirDestination):
        bundle = transaction_json(store, jobs, job_id, settings.fhir_report_status)
        return Payload(("fhir",), bundle=bundle)
    files, note = report_files(store, job_id)
    return Payload(tuple(files), datasets=tuple(_datasets(files)), note=note)


def send(destination: AnyDestination, sent: Payload, calling_ae: str) -> str | None:
    """Send ``sent`` to ``destination``: a note on how it was taken, DeliveryFailed if not."""
    if isinstance(destination, FhirDestination):
        post_transaction(destination, sent.bundle)
        return None
    if isinstance(destination, StowDestination):
        return stow(destination, list(sent.datasets))
    return c_store(destination, list(sent.datasets), calling_ae)


class DeliveryWorker:
    """Sends what is due, a few destinations at once."""

    def __init__(self, jobs: JobStore, store: StudyStore, destinations: Destinations,
                 settings: Settings) -> None:
        self._jobs = jobs
        self._ledger = jobs.deliveries
        self._store = store
        self._destinations = destinations
        self._settings = settings
        self._wake = asyncio.Event()
        self._sending: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.delivery_concurrency)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="delivery")

    async def stop(self) -> None:
        sending = list(self._sending)
        tasks = [t for t in (self._task, *self._sending.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for job_id, destination in sending:  # due again at once, here or in another process
            self._ledger.release(job_id, destination)

    def wake(self) -> None:
        """Look for due deliveries now (a job has just succeeded)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            free = self._settings.delivery_concurrency * 2 - len(self._sending)
            claimed = await asyncio.to_thread(self._ledger.claim, time.time(), ATTEMPT_LEASE_S,
                                              max(free, 0)) if free > 0 else []
            for delivery in claimed:
                key = (delivery.job_id, delivery.destination)
                if key not in self._sending:
                    self._sending[key] = asyncio.create_task(self._attempt(delivery))
            next_due = await asyncio.to_thread(self._ledger.next_due)
            wait = IDLE_POLL_S if next_due is None else next_due - time.time()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.05, min(wait, IDLE_POLL_S)))
            except TimeoutError:
                pass

    async def _attempt(self, delivery: Delivery) -> None:
        logs.job_id.set(delivery.job_id)  # this task's own context: its lines name the job
        try:
            async with self._slots:
                await self._deliver(delivery)
        except Exception:  # a bug here must not stop other deliveries, nor the loop
            log.exception("delivery of job %s to %s stopped unexpectedly", delivery.job_id,
                          delivery.destination)
            self._count(delivery.destination, "failed")
            self._ledger.failed(delivery.job_id, delivery.destination, (),
                                "delivery stopped on an unexpected error; it has been logged")
        finally:
            self._sending.pop((delivery.job_id, delivery.destination), None)

    async def _deliver(self, delivery: Delivery) -> None:
        job_id, name = delivery.job_id, delivery.destination
        destination = self._destinations.by_name.get(name)
        if destination is None:
            self._ledger.failed(job_id, name, (), "this destination is no longer configured")
            self._count(name, "failed")
            return
        try:
            sent = await asyncio.to_thread(payload, self._store, self._jobs, destination,
                                           job_id, self._settings)
        except BoneMetsError as exc:  # the result is gone (deleted, expired) or unreadable
            self._ledger.failed(job_id, name, (), f"nothing to send: {exc.detail}")
            self._count(name, "failed")
            return
        try:
            warning = await asyncio.to_thread(send, destination, sent, self._settings.ae_title)
        except DeliveryFailed as exc:
            self._failed(delivery, sent.objects, exc)
            return
        self._ledger.delivered(job_id, name, sent.objects,
                               "; ".join(filter(None, (sent.note, warning))) or None)
        self._count(name, "delivered")
        log.info("job %s delivered to %s (%s)", job_id, name, ", ".join(sent.objects))

    def _failed(self, delivery: Delivery, objects: tuple[str, ...], exc: DeliveryFailed) -> None:
        settings = self._settings
        attempts = delivery.attempts + 1
        at = time.time() + backoff_s(attempts, settings.delivery_backoff_s,
                                     settings.delivery_backoff_max_s)
        give_up = delivery.since + settings.delivery_give_up_h * 3600
        if exc.permanent or at > give_up:
            why = "refused as sent" if exc.permanent else f"still failing after {attempts}" \
                f" attempts over {settings.delivery_give_up_h:g} h"
            self._ledger.failed(delivery.job_id, delivery.destination, objects,
                                f"{exc.detail}; {why}")
            self._count(delivery.destination, "failed")
            log.warning("delivery of job %s to %s failed: %s", delivery.job_id,
                        delivery.destination, exc.detail)
            return
        self._ledger.retry(delivery.job_id, delivery.destination, at, objects, exc.detail)
        self._count(delivery.destination, "retried")
        log.info("delivery of job %s to %s failed (attempt %d), retrying in %.0f s: %s",
                 delivery.job_id, delivery.destination, attempts, at - time.time(), exc.detail)


    def _count(self, name: str, outcome: str) -> None:
        """An attempt in the metrics, under its destination's kind (never its name)."""
        destination = self._destinations.by_name.get(name)
        kind = destination.kind if destination is not None else "unknown"
        metrics.deliveries.labels(kind, outcome).inc()


def _datasets(files: dict[str, bytes]) -> list[Dataset]:
    return [pydicom.dcmread(BytesIO(data)) for data in files.values()]

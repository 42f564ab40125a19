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
from api.delivery.claiming import ClaimLoop
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
    from api.delivery.cstore import c_store  # pynetdicom: only for a DIMSE destination

    return c_store(destination, list(sent.datasets), calling_ae)


class DeliveryWorker(ClaimLoop[tuple[str, str], Delivery]):
    """Sends what is due, a few destinations at once."""

    def __init__(self, jobs: JobStore, store: StudyStore, destinations: Destinations,
                 settings: Settings) -> None:
        super().__init__("delivery", settings.delivery_concurrency)
        self._jobs = jobs
        self._ledger = jobs.deliveries
        self._store = store
        self._destinations = destinations
        self._settings = settings

    def _claim(self, now: float, limit: int) -> list[Delivery]:
        return self._ledger.claim(now, ATTEMPT_LEASE_S, limit)

    def _next_due(self) -> float | None:
        return self._ledger.next_due()

    def _key(self, item: Delivery) -> tuple[str, str]:
        return item.job_id, item.destination

    def _release(self, key: tuple[str, str]) -> None:
        self._ledger.release(*key)

    async def _attempt(self, item: Delivery) -> None:
        logs.job_id.set(item.job_id)  # this task's own context: its lines name the job
        await self._deliver(item)

    def _stopped_unexpectedly(self, item: Delivery) -> None:
        log.exception("delivery of job %s to %s stopped unexpectedly", item.job_id,
                      item.destination)
        self._count(item.destination, "failed")
        self._ledger.failed(item.job_id, item.destination, (),
                            "delivery stopped on an unexpected error; it has been logged")

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

"""What is waiting, as the job database says at scrape time: queued and running jobs, the
oldest queued job's age, deliveries and webhook events not yet sent.

Read from the database rather than counted in a process, so that every API and worker
process reports the same true values however many there are, and a restart loses nothing.
Four small aggregate queries over indexed columns (``jobs_by_state``, ``deliveries_due``,
``webhooks_due``): cheap enough for a scrape every few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.db.connection import Database
from api.study.deliveries import DeliveryState
from api.study.job_rows import JobState
from api.study.webhooks import WebhookState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacklogCounts:
    queued: int
    running: int
    oldest_queued_age_s: float  # 0 when nothing is queued
    deliveries_pending: int
    webhooks_pending: int


class Backlog:
    """The job database's counts of work not done yet."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def counts(self, now: float | None = None) -> BacklogCounts:
        now = time.time() if now is None else now
        with self._db.reading() as cur:
            def row(sql: str, state: str) -> tuple[Any, ...]:
                found = cur.execute(sql, (state,)).fetchone()
                assert found is not None  # an aggregate answers one row
                return found

            queued, oldest = row("SELECT COUNT(*), MIN(created_at) FROM jobs WHERE state = ?",
                                 JobState.QUEUED.value)
            running = row("SELECT COUNT(*) FROM jobs WHERE state = ?", JobState.RUNNING.value)
            deliveries = row("SELECT COUNT(*) FROM deliveries WHERE state = ?",
                             DeliveryState.PENDING.value)
            webhooks = row("SELECT COUNT(*) FROM webhooks WHERE state = ?",
                           WebhookState.PENDING.value)
        age = 0.0 if oldest is None else max(now - float(oldest), 0.0)
        return BacklogCounts(int(queued), int(running[0]), age, int(deliveries[0]),
                             int(webhooks[0]))


class BacklogCollector(Collector):
    """The backlog as Prometheus gauges, read when scraped."""

    def __init__(self, backlog: Backlog) -> None:
        self._backlog = backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self._backlog.counts()
        except Exception as exc:  # the database is down: the scrape still answers
            log.warning("the backlog gauges are left out of this scrape: %s", exc)
            return
        yield GaugeMetricFamily("bonemets_jobs_queued", "jobs waiting for a worker (the"
                                " job database's count, the same from every process)",
                                counts.queued)
        yield GaugeMetricFamily("bonemets_jobs_running", "jobs a worker holds now",
                                counts.running)
        yield GaugeMetricFamily("bonemets_oldest_queued_job_age_seconds", "how long the"
                                " oldest queued job has waited; 0 when none waits",
                                counts.oldest_queued_age_s)
        yield GaugeMetricFamily("bonemets_deliveries_pending", "PACS and FHIR deliveries"
                                " not yet delivered nor failed for good",
                                counts.deliveries_pending)
        yield GaugeMetricFamily("bonemets_webhooks_pending", "webhook events not yet"
                                " delivered nor failed for good", counts.webhooks_pending)

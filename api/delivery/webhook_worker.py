"""The webhook loop: due events claimed from the ledger, signed, POSTed, outcomes recorded.

Runs in the gateway's event loop, in the processes that run jobs. A 2xx answer delivers the
event; 410 Gone fails it (the receiver asks for no more); anything else, or no answer within
the file's ``timeout_s``, is tried again after a backoff doubling from ``backoff_s`` up to
``backoff_max_s``, until ``give_up_s`` after the job's end. Redirects are not followed. A host
that resolves outside the allow-list fails the event at once. The job's own state was written
before any of this: a receiver that is down or slow never touches it. Logs name the job and
the status only: the URL and the event's metadata are the caller's.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from urllib.parse import SplitResult, urlunsplit

import httpx

from api import metrics
from api.delivery.allow_list import pinned_address
from api.delivery.claiming import ClaimLoop
from api.delivery.webhook_clients import Webhooks, parse_callback, trusted_cas
from api.delivery.webhook_events import event_body, event_document, signed_headers
from api.delivery.worker import backoff_s
from api.errors import BoneMetsError, CallbackRefused
from api.study.jobs import JobStore
from api.study.storage import StudyStore
from api.study.webhooks import Webhook as Event

log = logging.getLogger(__name__)

# Set while an event is sent: httpx logs every request's URL at INFO (httpcore its host at
# DEBUG), and a callback URL is the caller's (it may carry its own token), so those lines
# are dropped. A logger's filter sees only its own records, hence each logger by name.
_SENDING = contextvars.ContextVar("sending_webhook", default=False)


class _QuietWhileSending(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SENDING.get()


QUIET = _QuietWhileSending()
CHATTY_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2")
CONCURRENCY = 4


class WebhookWorker(ClaimLoop[str, Event]):
    """Sends due events, a few at once."""

    def __init__(self, jobs: JobStore, store: StudyStore, webhooks: Webhooks,
                 public_url: str = "") -> None:
        super().__init__("webhooks", CONCURRENCY)
        self._jobs = jobs
        self._ledger = jobs.webhooks
        self._store = store
        self._webhooks = webhooks
        self._public_url = public_url
        self._policy = webhooks.config
        # Longer than an attempt: resolving, then one request bounded by timeout_s.
        self._lease_s = 60.0 + 4 * self._policy.timeout_s
        for name in CHATTY_LOGGERS:  # once: the same filter is not added twice
            logging.getLogger(name).addFilter(QUIET)
        self._http = httpx.AsyncClient(timeout=self._policy.timeout_s, follow_redirects=False,
                                       verify=trusted_cas(self._policy),
                                       trust_env=False)  # no proxy: the address is checked

    async def stop(self) -> None:
        await super().stop()
        await self._http.aclose()

    def _claim(self, now: float, limit: int) -> list[Event]:
        return self._ledger.claim(now, self._lease_s, limit)

    def _next_due(self) -> float | None:
        return self._ledger.next_due()

    def _key(self, item: Event) -> str:
        return item.job_id

    def _release(self, key: str) -> None:
        self._ledger.release(key)

    async def _attempt(self, item: Event) -> None:
        await self._send(item)

    def _stopped_unexpectedly(self, item: Event) -> None:
        log.exception("webhook of job %s stopped unexpectedly", item.job_id)
        metrics.webhooks.labels("failed").inc()
        self._ledger.failed(item.job_id, None, "sending stopped on an unexpected error;"
                            " it has been logged")

    async def _send(self, event: Event) -> None:
        job = await asyncio.to_thread(self._jobs.get, event.job_id)
        if job is None:  # deleted meanwhile, and its event with it
            return
        signer = self._webhooks.signer(job.owner)
        try:
            if signer is None:
                raise CallbackRefused("the study's client has no webhook secret configured")
            target = parse_callback(event.url)
            address = await pinned_address(self._webhooks.allow, target.hostname or "",
                                           _port(target))
        except CallbackRefused as exc:
            await asyncio.to_thread(self._ledger.failed, event.job_id, None, exc.detail, False)
            metrics.webhooks.labels("failed").inc()
            log.warning("webhook of job %s refused: %s", event.job_id, exc.detail)
            return
        except OSError as exc:  # the name does not resolve now: DNS may come back
            await self._retry(event, None, f"the callback host does not resolve ({exc.errno})")
            return
        lesions = await asyncio.to_thread(self._lesion_count, job.id) \
            if event.event_type == "study.succeeded" else None
        body = event_body(event_document(event, job, lesions, self._public_url))
        headers = signed_headers(signer, event.event_id, body, time.time())
        await self._post(event, target, address, body, headers)

    async def _post(self, event: Event, target: SplitResult, address: str, body: bytes,
                    headers: dict[str, str]) -> None:
        host = f"[{address}]" if ":" in address else address
        pinned = urlunsplit(target._replace(netloc=f"{host}:{_port(target)}"))
        headers["host"] = target.netloc
        extensions = {"sni_hostname": target.hostname} if target.scheme == "https" else {}
        _SENDING.set(True)  # this task's context only
        try:
            async with self._http.stream("POST", pinned, content=body, headers=headers,
                                         extensions=extensions) as answer:
                status = answer.status_code  # the body is not read: it is the receiver's
        except httpx.HTTPError as exc:
            await self._retry(event, None, f"no answer: {type(exc).__name__}")
            return
        if 200 <= status < 300:
            await asyncio.to_thread(self._ledger.delivered, event.job_id, status)
            metrics.webhooks.labels("delivered").inc()
            log.info("webhook %s of job %s delivered (%d)", event.event_type, event.job_id,
                     status)
        elif status == 410:
            await asyncio.to_thread(self._ledger.failed, event.job_id, status,
                                    "the receiver answered 410 Gone: not sent again")
            metrics.webhooks.labels("failed").inc()
            log.warning("webhook of job %s: the receiver answered 410 Gone", event.job_id)
        else:
            await self._retry(event, status, f"the receiver answered {status}")

    async def _retry(self, event: Event, status: int | None, detail: str) -> None:
        policy = self._policy
        attempts = event.attempts + 1
        at = time.time() + backoff_s(attempts, policy.backoff_s, policy.backoff_max_s)
        if at > event.since + policy.give_up_s:
            detail = f"{detail}; still failing after {attempts} attempts over" \
                     f" {policy.give_up_s:g} s"
            await asyncio.to_thread(self._ledger.failed, event.job_id, status, detail)
            metrics.webhooks.labels("failed").inc()
            log.warning("webhook of job %s failed: %s", event.job_id, detail)
            return
        await asyncio.to_thread(self._ledger.retry, event.job_id, at, status, detail)
        metrics.webhooks.labels("retried").inc()
        log.info("webhook of job %s failed (attempt %d), retrying in %.1f s: %s",
                 event.job_id, attempts, at - time.time(), detail)

    def _lesion_count(self, job_id: str) -> int | None:
        try:
            result = self._store.read_result(job_id)
        except BoneMetsError:  # unreadable: the event still tells the job ended
            return None
        return None if result is None else len(result.lesions)


def _port(target: SplitResult) -> int:
    return target.port or (443 if target.scheme == "https" else 80)

"""The webhooks ledger on both databases: one event written with the job's outcome (none when
the outcome is not written), claimed by one process at a time, deleted with the job."""

from __future__ import annotations

import time

from api.study.jobs import JobError, JobStore
from api.study.webhooks import WebhookState
from tests.unit.api.study.conftest import OpenStore

URL = "https://ris.example.org/events"
ERROR = JobError("urn:bonemets:problem:model-error", "Model error", 502, "bad answer")


def test_an_event_is_written_with_the_outcome_and_only_then(jobs: JobStore) -> None:
    for job_id in ("ok", "bad", "quiet", "lost"):
        jobs.create(job_id, slices_total=4, owner="ris")
    for _ in range(4):
        assert jobs.claim("w1", lease_s=30) is not None
    assert jobs.succeed("ok", worker="w1", callback=URL)
    assert jobs.fail("bad", ERROR, worker="w1", callback=URL)
    assert jobs.succeed("quiet", worker="w1")  # no callback URL: no event
    assert not jobs.succeed("lost", worker="w2", callback=URL)  # not its job: nothing at all
    ok, = jobs.webhooks.of_job("ok")
    bad, = jobs.webhooks.of_job("bad")
    assert (ok.event_type, ok.url, ok.state, ok.attempts) == (
        "study.succeeded", URL, WebhookState.PENDING, 0)
    assert bad.event_type == "study.failed" and bad.event_id != ok.event_id
    job = jobs.get("ok")
    assert job is not None and ok.since == ok.next_attempt_at == job.updated_at
    assert jobs.webhooks.of_job("quiet") == jobs.webhooks.of_job("lost") == []


def test_a_due_event_is_claimed_by_one_process_and_due_again_after_a_retry(
        open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    first.create("j", owner="ris")
    first.claim("w", lease_s=30)
    first.succeed("j", worker="w", callback=URL)
    now = time.time() + 1
    claimed = first.webhooks.claim(now, lease_s=60)
    assert [e.job_id for e in claimed] == ["j"] and second.webhooks.claim(now, 60) == []
    first.webhooks.retry("j", now, 500, "the receiver answered 500")
    event, = second.webhooks.claim(now, lease_s=60)
    assert (event.attempts, event.last_status, event.detail) == (
        1, 500, "the receiver answered 500")
    second.webhooks.delivered("j", 204)
    done, = first.webhooks.of_job("j")
    assert (done.state, done.attempts, done.last_status, done.detail) == (
        WebhookState.DELIVERED, 2, 204, None)
    assert first.webhooks.next_due() is None
    assert first.delete("j") and first.webhooks.of_job("j") == []

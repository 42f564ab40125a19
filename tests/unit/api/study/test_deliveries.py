"""The delivery ledger beside the jobs: rows made with the success, in one transaction, moved
by each attempt's outcome, due in order, gone with their job; on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time

import psycopg
import pytest

from api.study.deliveries import DeliveryState
from api.study.jobs import JobState, JobStore
from tests.unit.api.study.conftest import OpenStore


@pytest.fixture
def jobs(open_store: OpenStore) -> JobStore:
    """A job store on SQLite or PostgreSQL (conftest.py), with one queued job."""
    store = open_store()
    store.create("j1", owner="ris")
    return store


def test_a_success_makes_one_pending_row_per_destination_due_now(jobs: JobStore) -> None:
    before = time.time()
    jobs.succeed("j1", ["b-pacs", "a-pacs"])
    rows = jobs.deliveries.of_job("j1")
    assert [(r.destination, r.state, r.attempts) for r in rows] == [
        ("a-pacs", DeliveryState.PENDING, 0), ("b-pacs", DeliveryState.PENDING, 0)]
    assert all(before <= (r.next_attempt_at or 0) <= time.time() for r in rows)
    assert [r.destination for r in jobs.deliveries.due(time.time())] != []


def test_the_success_and_its_rows_commit_together(jobs: JobStore) -> None:
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        jobs.succeed("j1", [None])  # type: ignore[list-item]  # a row that cannot be written
    job = jobs.get("j1")
    assert job is not None and job.state is JobState.QUEUED
    assert jobs.deliveries.of_job("j1") == []


def test_outcomes_move_the_row_and_only_due_rows_are_handed_out(jobs: JobStore) -> None:
    jobs.succeed("j1", ["pacs", "vna"])
    later = time.time() + 60
    jobs.deliveries.retry("j1", "pacs", later, ["seg.dcm", "sr.dcm"], "HTTP 503")
    jobs.deliveries.delivered("j1", "vna", ["sr.dcm"], None)
    assert jobs.deliveries.due(time.time()) == []
    assert jobs.deliveries.next_due() == pytest.approx(later)
    pacs, vna = jobs.deliveries.of_job("j1")
    assert (pacs.state, pacs.attempts, pacs.objects, pacs.detail) == (
        DeliveryState.PENDING, 1, ("seg.dcm", "sr.dcm"), "HTTP 503")
    assert (vna.state, vna.next_attempt_at, vna.objects) == (
        DeliveryState.DELIVERED, None, ("sr.dcm",))
    jobs.deliveries.failed("j1", "pacs", ["seg.dcm"], "refused")
    assert jobs.deliveries.next_due() is None
    jobs.deliveries.resend("j1", ["pacs"])
    [again] = [r for r in jobs.deliveries.of_job("j1") if r.destination == "pacs"]
    assert (again.state, again.attempts, again.detail) == (DeliveryState.PENDING, 0, None)


def test_deleting_a_job_deletes_its_rows(jobs: JobStore) -> None:
    jobs.succeed("j1", ["pacs"])
    assert jobs.delete("j1")
    assert jobs.deliveries.of_job("j1") == []
    assert jobs.deliveries.next_due() is None


def test_two_senders_on_one_database_never_claim_the_same_row(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    for k in range(6):
        first.create(f"job{k}", owner="ris")
        first.succeed(f"job{k}", ["pacs", "vna"])
    now = time.time()
    taken = first.deliveries.claim(now, 600, limit=5) + second.deliveries.claim(now, 600,
                                                                                   limit=20)
    keys = [(d.job_id, d.destination) for d in taken]
    assert len(keys) == len(set(keys)) == 12
    assert first.deliveries.claim(now, 600) == []  # nothing due until the lease is over
    assert first.deliveries.claim(now + 601, 600) != []  # a sender that died: due again
    job_id, destination = keys[0]
    second.deliveries.release(job_id, destination)
    [again] = first.deliveries.claim(time.time(), 600)
    assert (again.job_id, again.destination, again.attempts) == (job_id, destination, 0)

"""A job as the job database keeps it: its state, its error, who sent it and with what.

:mod:`api.study.jobs` reads and writes these rows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from api.schemas.submission import NO_METADATA, SubmissionMetadata

# What a submission may ask for, and the rank a claim orders by (higher first).
PriorityName = Literal["routine", "stat"]
PRIORITY_RANKS: dict[PriorityName, int] = {"routine": 0, "stat": 1}


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True)
class JobError:
    """Why a job failed, in the words of a problem+json body."""

    type: str
    title: str
    status: int
    detail: str


@dataclass(frozen=True)
class Job:
    id: str
    state: JobState
    created_at: float
    updated_at: float
    slices_total: int
    slices_done: int
    attempts: int  # claims so far
    error: JobError | None
    owner: str | None = None  # the submitting client; None: stored before owners existed
    worker: str | None = None  # who claimed it last
    priority: int = 0  # PRIORITY_RANKS: stat studies are claimed first
    # What the caller sent with the study: patient data, never logged.
    metadata: SubmissionMetadata = NO_METADATA

    @property
    def priority_name(self) -> PriorityName:
        return priority_name(self.priority)


def priority_name(rank: int) -> PriorityName:
    """The name of a priority rank (PRIORITY_RANKS)."""
    return next(name for name, rank_of in PRIORITY_RANKS.items() if rank_of == rank)


@dataclass(frozen=True)
class IdempotencyKey:
    """The key a client sent with a submission, and a digest of what it sent under it."""

    key: str
    digest: str


@dataclass(frozen=True)
class Page:
    """Which jobs one page of a listing holds: owner (None: any), states (none: any), where
    it starts and how many."""

    owner: str | None = None
    states: tuple[JobState, ...] = ()
    after: tuple[float, str] | None = None  # the (created_at, id) the last page ended on
    limit: int = 50

"""The clients a running service holds, made once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from api.config import Settings
from api.inference.protocol import SegmentationModel
from api.study.jobs import JobStore
from api.study.runner import JobRunner
from api.study.storage import StudyStore


@dataclass
class Services:
    """Everything a request reaches: settings, job rows, stored files, the model, the runner."""

    settings: Settings
    jobs: JobStore
    store: StudyStore
    model: SegmentationModel
    runner: JobRunner

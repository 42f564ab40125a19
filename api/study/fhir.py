"""A finished study as FHIR: the Bundle a reader is served (a collection) and the one a FHIR
server is sent (a transaction), made from the stored result and the job's metadata.

The SEG and SR the Observations derive from are made first (or read back, once made), so that
a reference names an object the API serves, and no SEG is named where none could be made.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pydicom

from api.errors import JobNotFound, StorageError
from api.reports.fhir import ReportFacts, ReportStatus, build_bundle, study_datetime
from api.reports.fhir_example import example_bundle
from api.schemas import StudyResult
from api.study.jobs import Job, JobState, JobStore
from api.study.reports import finished_job, report_files
from api.study.series_record import series_on_disk
from api.study.services import Services
from api.study.storage import StudyStore

FHIR_JSON = "application/fhir+json"
__all__ = ["FHIR_JSON", "bundle_json", "example_bundle", "fhir_bundle", "transaction_json"]


async def fhir_bundle(job_id: str, services: Services, viewer: str | None) -> bytes:
    """The study's Bundle (type collection) as FHIR JSON."""
    job, result = finished_job(job_id, services, viewer, what="FHIR")
    return await asyncio.to_thread(bundle_json, services.store, job, result,
                                   services.settings.fhir_report_status)


def transaction_json(store: StudyStore, jobs: JobStore, job_id: str,
                     status: ReportStatus) -> bytes:
    """The Bundle a FHIR server is sent for a finished job (type transaction);
    JobNotFound when the job or its result is gone."""
    job = jobs.get(job_id)
    result = store.read_result(job_id) if job is not None else None
    if job is None or result is None or job.state is not JobState.SUCCEEDED:
        raise JobNotFound(f"the result of study job {job_id} is gone")
    return bundle_json(store, job, result, status, transaction=True)


def bundle_json(store: StudyStore, job: Job, result: StudyResult, status: ReportStatus,
                transaction: bool = False) -> bytes:
    """The Bundle of a succeeded ``job``, its SEG and SR made first when they are not yet."""
    files, _ = report_files(store, job.id)
    facts = ReportFacts(
        status=status,
        effective=_study_time(store, job.id) or _instant(job.created_at),
        issued=datetime.fromtimestamp(job.updated_at, UTC),
        with_seg="seg.dcm" in files,
    )
    bundle = build_bundle(job.id, result, job.metadata, facts, transaction=transaction)
    return bundle.model_dump_json().encode()


def _study_time(store: StudyStore, job_id: str) -> str | None:
    """The study's date (and time) from its first slice's header, where it has one."""
    try:
        with series_on_disk(store, job_id, [0]) as series:
            header = pydicom.dcmread(series.slices[0].path, stop_before_pixels=True,
                                     specific_tags=["StudyDate", "StudyTime",
                                                    "TimezoneOffsetFromUTC"])
    except (StorageError, OSError, pydicom.errors.InvalidDicomError):
        return None
    return study_datetime(header)


def _instant(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")

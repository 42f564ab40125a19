"""The DICOM SEG and SR of a finished study: made from the stored result, masks and upload
headers when first asked for, then kept with the job's objects (deleted with the job)."""

from __future__ import annotations

import asyncio
from io import BytesIO

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from api.errors import (
    JobNotFinished,
    JobNotFound,
    NoSegments,
    SegmentationUnsupported,
)
from api.reports.labels import lesion_boxes, lesion_labels
from api.reports.outline import Outline, largest_region, outline
from api.reports.sources import SourceImages, read_sources
from api.schemas import StudyResult
from api.study.jobs import Job, JobState
from api.study.series_record import series_on_disk
from api.study.services import Services
from api.study.storage import StudyStore
from api.study.views import visible


async def seg_dicom(job_id: str, services: Services, viewer: str | None) -> bytes:
    """The study's SEG (Part 10 bytes); NoSegments for a study without lesions."""
    _, result = finished_job(job_id, services, viewer)
    if not result.lesions:
        raise NoSegments("the study has no lesion, and a DICOM Segmentation holds at least one"
                         " segment; its SR (sr.dcm) records that nothing was found")
    return await asyncio.to_thread(_cached, services.store, job_id, "seg.dcm", result)


async def sr_dicom(job_id: str, services: Services, viewer: str | None) -> bytes:
    """The study's TID 1500 SR (Part 10 bytes), one measurement group per lesion."""
    _, result = finished_job(job_id, services, viewer)
    return await asyncio.to_thread(_cached, services.store, job_id, "sr.dcm", result)


def report_files(store: StudyStore, job_id: str) -> tuple[dict[str, bytes], str | None]:
    """What a destination is sent for a finished job: its SEG (when it has lesions and its
    series fits one) and its SR, by name, and a note on a SEG left out for a reason."""
    result = store.read_result(job_id)
    if result is None:
        raise JobNotFound(f"the result of study job {job_id} is gone")
    files: dict[str, bytes] = {}
    note = None
    if result.lesions:
        try:
            files["seg.dcm"] = _cached(store, job_id, "seg.dcm", result)
        except SegmentationUnsupported as exc:
            note = f"no SEG: {exc.detail}"
    files["sr.dcm"] = _cached(store, job_id, "sr.dcm", result)
    return files, note


def finished_job(job_id: str, services: Services, viewer: str | None,
                 what: str = "DICOM") -> tuple[Job, StudyResult]:
    """The job ``viewer`` sees and its result: JobNotFound when it sees none, JobNotFinished
    until it has succeeded (``what`` names what the caller asked for)."""
    job = services.jobs.get(job_id) if services.store.exists(job_id) else None
    if job is None or not visible(job.owner, viewer):
        raise JobNotFound("no such study job; it may have been deleted or expired")
    if job.state is not JobState.SUCCEEDED:
        raise JobNotFinished(f"study job {job_id} is {job.state.value}; {what} comes with the"
                             " result")
    result = services.store.read_result(job_id)
    if result is None:
        raise JobNotFound(f"the result of study job {job_id} is gone")
    return job, result


def _cached(store: StudyStore, job_id: str, name: str, result: StudyResult) -> bytes:
    kept = store.read_output(job_id, name)
    if kept is not None:
        return kept
    dataset = make_seg(store, job_id, result) if name == "seg.dcm" else make_sr(
        store, job_id, result)
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    store.write_output(job_id, name, data)
    return data


def _sources(store: StudyStore, job_id: str) -> SourceImages:
    # Headers only, read while the files are on disk (fetched, where they are in a bucket).
    with series_on_disk(store, job_id) as series:
        return read_sources(series)


def make_seg(store: StudyStore, job_id: str, result: StudyResult) -> Dataset:
    """The SEG dataset of a finished job with lesions."""
    from api.reports.seg import build_seg  # highdicom: loaded by the first SEG, not at start

    sources = _sources(store, job_id)
    images, labels = seg_input(store, job_id, result, sources)
    return build_seg(job_id, result, images, labels)


def seg_input(store: StudyStore, job_id: str, result: StudyResult,
              sources: SourceImages) -> tuple[list[Dataset], NDArray[np.uint16]]:
    """The source images the SEG derives from and, per frame of theirs, each pixel's lesion id.

    Single-frame series: only the slices with lesion pixels, so that a long series is not held
    in memory as labels; one multi-frame instance: all its frames (highdicom's rule).
    """
    first = result.slices[0]
    owners = lesion_boxes(result)
    painted: dict[int, NDArray[np.uint16]] = {}
    for entry in result.slices:
        if entry.index in owners:
            mask = store.read_mask(job_id, entry.index, (entry.rows, entry.columns))
            position, frame = sources.place[entry.index]
            key = position if frame is None else frame
            painted[key] = lesion_labels(mask, owners[entry.index])
    if sources.multi_frame:
        if len(sources.datasets) != 1:
            raise SegmentationUnsupported(
                "a DICOM Segmentation derives from one multi-frame instance, and this series"
                f" has {len(sources.datasets)}: the findings are in sr.dcm and the JSON result")
        frames = int(sources.datasets[0].get("NumberOfFrames", 1))
        labels = np.zeros((frames, first.rows, first.columns), dtype=np.uint16)
        for frame, lesion_ids in painted.items():
            labels[frame] = lesion_ids
        return list(sources.datasets), labels
    kept = sorted(painted)
    return [sources.datasets[k] for k in kept], np.stack([painted[k] for k in kept])


def make_sr(store: StudyStore, job_id: str, result: StudyResult) -> Dataset:
    """The SR dataset of a finished job, with or without lesions."""
    from api.reports.sr import build_sr  # highdicom: loaded by the first SR, not at start

    sources = _sources(store, job_id)
    return build_sr(job_id, result, sources, lesion_outlines(store, job_id, result))


def lesion_outlines(store: StudyStore, job_id: str, result: StudyResult) -> dict[int, Outline]:
    """Each lesion's outline on the slice where it has the most pixels."""
    owners = lesion_boxes(result)
    best: dict[int, tuple[int, int, NDArray[np.bool_]]] = {}
    for index, on_slice in sorted(owners.items()):
        entry = result.slices[index]
        labels = lesion_labels(store.read_mask(job_id, index, (entry.rows, entry.columns)),
                               on_slice)
        for lesion_id in {lesion_id for lesion_id, _ in on_slice}:
            pixels = labels == lesion_id
            count = int(pixels.sum())
            if count and count > best.get(lesion_id, (0, -1, pixels))[0]:
                best[lesion_id] = (count, index, pixels)
    return {lesion_id: Outline(index, outline(largest_region(pixels)))
            for lesion_id, (_, index, pixels) in best.items()}

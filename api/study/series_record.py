"""The series chosen at intake, kept with the job, its files named relative to the upload:
a record written on one machine reads on another, where the upload lies in another folder
(a worker's scratch, an API replica's), or in the same one on disk."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from api.dicom.series import CTSeries, SliceRef
from api.errors import StorageError
from api.study.storage import StudyStore


def portable(series: CTSeries, upload: Path) -> CTSeries:
    """``series`` with each slice's file named relative to ``upload``."""
    return replace(series, slices=tuple(_relative(ref, upload) for ref in series.slices))


def _relative(ref: SliceRef, upload: Path) -> SliceRef:
    # One relative_to, not is_relative_to and then relative_to: each parses both paths.
    try:
        return replace(ref, path=ref.path.relative_to(upload))
    except ValueError:
        return ref  # a file outside the upload keeps its name


def placed(series: CTSeries, upload: Path) -> CTSeries:
    """``series`` with its files found in ``upload``. A record from before relative names
    holds absolute paths, which joining leaves as they were."""
    return replace(series, slices=tuple(replace(ref, path=upload / ref.path)
                                        for ref in series.slices))


def keep_series(store: StudyStore, job_id: str, series: CTSeries, upload: Path) -> None:
    """Store the series whose files are in ``upload``, by names relative to it."""
    store.write_series(job_id, portable(series, upload))


def stored_series(store: StudyStore, job_id: str) -> CTSeries | None:
    """The stored record (files relative to the upload), or None when it cannot be read."""
    series = store.read_series(job_id)
    return series if isinstance(series, CTSeries) else None


@contextmanager
def series_on_disk(store: StudyStore, job_id: str,
                   indices: Iterable[int] | None = None) -> Iterator[CTSeries]:
    """The job's series with its files on this machine for the block: every file, or those
    of the slices at ``indices``; StorageError when the record is gone or the index is
    not one of its slices."""
    record = stored_series(store, job_id)
    if record is None:
        raise StorageError(f"the series of job {job_id} cannot be read")
    chosen = range(len(record.slices)) if indices is None else list(indices)
    if not all(0 <= index < len(record.slices) for index in chosen):
        raise StorageError(f"the series of job {job_id} has no such slice")
    names = sorted({record.slices[i].path.as_posix() for i in chosen
                    if not record.slices[i].path.is_absolute()})
    with store.local_upload(job_id, names) as upload:
        yield placed(record, upload)

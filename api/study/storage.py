"""Where a study's upload, result and masks live: one folder of objects per job, on the local
disk (the default) or in an S3-compatible bucket (``BONEMETS_STORAGE_URL``).

    studies/<job_id>/upload/...        the DICOM files as received (zips expanded)
    studies/<job_id>/upload.json       (in a bucket) the upload's file names
    studies/<job_id>/series.pickle     the series chosen at intake, its files named
                                       relative to upload/
    studies/<job_id>/result.json       the result, written once, whole
    studies/<job_id>/masks/<i>.bits    packed mask bits of each positive slice,
                                       at the slice's own size
    studies/<job_id>/outputs/<name>    objects made from the result when first
                                       asked for (seg.dcm, sr.dcm)

On disk the keys are paths under the data directory, as they always were, and the upload is
written and decoded in place. In a bucket, the upload is written to a local scratch folder
first and sent when its header pass is done (:meth:`StudyStore.keep_upload`); whatever needs
its files on disk (the decoder pool, pydicom) fetches them into scratch for the while
(:meth:`StudyStore.local_upload`). There each file's key is a hash of its name in the upload
(``upload/<sha256>``), and ``upload.json`` lists the names: a zip member's name may be a
patient's, and keys show up in the object store's own logs. Masks of empty slices are not
stored; PNGs are rendered when asked for. The upload is kept with the result, so that
overlays can be drawn and an interrupted job can be run again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from api.config import Settings
from api.errors import StorageError
from api.objects import FolderObjects, ObjectStore, open_objects
from api.schemas.result import StudyResult

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_OUTPUT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _output_name(name: str) -> str:
    if not _OUTPUT_NAME.match(name) or ".." in name:
        raise ValueError(f"not an output name: {name!r}")
    return name


def _safe_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and parts[0] != "/" and ".." not in parts


def _newest_mtime(folder: Path) -> float:
    try:
        return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))])
    except OSError:  # removed meanwhile
        return time.time()


def open_study_store(settings: Settings) -> StudyStore:
    """The store the settings name: the data directory, or ``storage_url``'s bucket."""
    objects = open_objects(settings.storage_url, settings.data_dir,
                           part_mb=settings.storage_part_mb)
    log.info("studies are kept in %s", objects.describe())
    return StudyStore(settings.data_dir, objects, settings.scratch_dir)


class StudyStore:
    """The objects of each job, in ``objects`` (default: files under ``root``); local
    scratch for uploads on their way in and out under ``scratch`` (default: root/scratch)."""

    def __init__(self, root: Path, objects: ObjectStore | None = None,
                 scratch: Path | None = None) -> None:
        self.root = root
        self.objects: ObjectStore = objects if objects is not None else FolderObjects(root)
        self.scratch = scratch if scratch is not None else root / "scratch"
        studies = self.objects.local_path("studies")
        if studies is not None:
            studies.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _prefix(job_id: str) -> str:
        if not _JOB_ID.match(job_id):
            # Job ids are ours (uuid4 hex); anything else never names a folder or a key.
            raise ValueError(f"not a job id: {job_id!r}")
        return f"studies/{job_id}/"

    def job_dir(self, job_id: str) -> Path:
        """The job's folder in the on-disk layout (where a folder store keeps it)."""
        return self.root / self._prefix(job_id)

    def create(self, job_id: str) -> Path:
        """Make the job's folder; the folder to write its upload into (see keep_upload)."""
        prefix = self._prefix(job_id)
        in_place = self.objects.local_path(prefix + "upload")
        if in_place is not None:
            in_place.mkdir(parents=True, exist_ok=False)
            return in_place
        incoming = self._incoming(job_id)
        incoming.mkdir(parents=True, exist_ok=False)
        try:
            self.objects.make_folder(prefix)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        return incoming

    def keep_upload(self, job_id: str) -> None:
        """Store the files written into :meth:`create`'s folder and free the scratch; on disk
        they are where they belong already."""
        incoming = self._incoming(job_id)
        if self.objects.local_path(self._prefix(job_id)) is not None or not incoming.exists():
            return
        files = [p for p in sorted(incoming.rglob("*")) if p.is_file() and not p.is_symlink()]
        names = [p.relative_to(incoming).as_posix() for p in files]
        self.objects.put_files(
            (self._upload_key(job_id, name), path) for name, path in zip(names, files, strict=True))
        self.objects.put_bytes(self._prefix(job_id) + "upload.json", json.dumps(names).encode())
        shutil.rmtree(incoming, ignore_errors=True)

    @contextmanager
    def local_upload(self, job_id: str, names: Iterable[str] | None = None) -> Iterator[Path]:
        """A folder on this machine holding the job's upload (only ``names``, paths relative
        to it, when given) for the block: the upload itself on disk, else a scratch copy
        removed after."""
        in_place = self.objects.local_path(self._prefix(job_id) + "upload")
        if in_place is not None:
            yield in_place
            return
        folder = self.scratch / "runs" / f"{job_id}-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir(parents=True)
            wanted = self._upload_names(job_id) if names is None else list(names)
            self.objects.download_files((self._upload_key(job_id, name), folder / name)
                                        for name in wanted if _safe_name(name))
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _upload_key(self, job_id: str, name: str) -> str:
        return f"{self._prefix(job_id)}upload/{hashlib.sha256(name.encode()).hexdigest()}"

    def _upload_names(self, job_id: str) -> list[str]:
        raw = self.objects.get_bytes(self._prefix(job_id) + "upload.json")
        try:
            names = json.loads(raw) if raw is not None else None
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise StorageError(f"the upload of job {job_id} cannot be read")
        return names

    def exists(self, job_id: str) -> bool:
        try:
            return self.objects.has_folder(self._prefix(job_id))
        except ValueError:
            return False

    def delete(self, job_id: str) -> None:
        """Every object of the job, and its scratch: an intake's that failed, a run's that
        was stopped while its files were being fetched."""
        self.objects.delete_prefix(self._prefix(job_id))
        shutil.rmtree(self._incoming(job_id), ignore_errors=True)
        for folder in (self.scratch / "runs").glob(f"{job_id}-*"):
            shutil.rmtree(folder, ignore_errors=True)

    def clear_outputs(self, job_id: str) -> None:
        """Remove a partial result and masks before a job runs again."""
        prefix = self._prefix(job_id)
        self.objects.delete_prefix(prefix + "masks/")
        self.objects.delete_prefix(prefix + "outputs/")
        self.objects.delete_keys([prefix + "result.json"])

    def write_result(self, job_id: str, result: StudyResult) -> None:
        self.objects.put_bytes(self._prefix(job_id) + "result.json",
                               result.model_dump_json().encode())

    def read_result(self, job_id: str) -> StudyResult | None:
        """The stored result, validated; an object that is not one is a StorageError."""
        raw = self.objects.get_bytes(self._prefix(job_id) + "result.json")
        if raw is None:
            return None
        try:
            return StudyResult.model_validate_json(raw)
        except ValidationError as exc:
            raise StorageError(f"result of job {job_id} cannot be read") from exc

    def write_mask(self, job_id: str, index: int, mask: npt.NDArray[np.bool_]) -> None:
        """Store one slice's mask (at the slice's own size) as packed bits."""
        header = np.array(mask.shape, dtype=np.uint32).tobytes()
        self.objects.put_bytes(self._prefix(job_id) + f"masks/{index}.bits",
                               header + np.packbits(mask).tobytes())

    def delete_mask(self, job_id: str, index: int) -> None:
        """Forget a slice's mask; it then reads as empty."""
        self.objects.delete_keys([self._prefix(job_id) + f"masks/{index}.bits"])

    def read_mask(self, job_id: str, index: int, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
        """The stored mask of a slice, or an empty one of ``shape`` where none was stored."""
        raw = self.objects.get_bytes(self._prefix(job_id) + f"masks/{index}.bits")
        if raw is None:
            return np.zeros(shape, dtype=bool)
        rows, cols = (int(v) for v in np.frombuffer(raw[:8], dtype=np.uint32))
        bits = np.unpackbits(np.frombuffer(raw[8:], dtype=np.uint8), count=rows * cols)
        return bits.reshape(rows, cols).astype(bool)

    def write_output(self, job_id: str, name: str, data: bytes) -> None:
        """Keep an object made from the result (``seg.dcm``...), whole."""
        self.objects.put_bytes(self._prefix(job_id) + "outputs/" + _output_name(name), data)

    def read_output(self, job_id: str, name: str) -> bytes | None:
        """An object kept by :meth:`write_output`, or None when there is none."""
        return self.objects.get_bytes(self._prefix(job_id) + "outputs/" + _output_name(name))

    def write_series(self, job_id: str, series: object) -> None:
        """Keep the header pass's result beside the upload (our own object, read by us only)."""
        self.objects.put_bytes(self._prefix(job_id) + "series.pickle", pickle.dumps(series))

    def read_series(self, job_id: str) -> object | None:
        """The series chosen at intake, or None when there is none or it cannot be read."""
        try:
            raw = self.objects.get_bytes(self._prefix(job_id) + "series.pickle")
            if raw is None:
                return None
            series: object = pickle.loads(raw)  # noqa: S301 - written by us, above
            return series
        except (StorageError, pickle.UnpicklingError, AttributeError, EOFError, ImportError):
            return None

    def sweep_scratch(self, older_than_s: float = 6 * 3600, now: float | None = None) -> int:
        """Remove scratch folders nothing has written to for ``older_than_s``: those of a
        process killed mid-run or mid-upload (a live one writes within minutes). How many."""
        cutoff = (time.time() if now is None else now) - older_than_s
        removed = 0
        for kind in ("incoming", "runs"):
            folder = self.scratch / kind
            for entry in list(folder.iterdir()) if folder.is_dir() else []:
                if _newest_mtime(entry) < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
        return removed

    def unavailable(self) -> str | None:
        """Why the store cannot be used now (a bucket unreachable, missing or refused), or
        None; one listing, for /readyz."""
        try:
            self.objects.has_folder("studies/")
        except StorageError as exc:
            return exc.detail
        return None

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def _incoming(self, job_id: str) -> Path:
        return self.scratch / "incoming" / job_id

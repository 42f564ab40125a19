"""Where a study's upload, result and masks live: one folder per job under the data directory.

    <data_dir>/studies/<job_id>/upload/...        the DICOM files as received (zips expanded)
    <data_dir>/studies/<job_id>/result.json       the result, written once, atomically
    <data_dir>/studies/<job_id>/masks/<i>.npy     packed mask bits of each positive slice,
                                                  at the slice's own size
    <data_dir>/studies/<job_id>/outputs/<name>    objects made from the result when first
                                                  asked for (seg.dcm, sr.dcm)

Masks of empty slices are not stored; PNGs are rendered when asked for. The upload is kept
with the result, so that overlays can be drawn and an interrupted job can be run again.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from api.errors import StorageError
from api.schemas.result import StudyResult

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_OUTPUT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _output_name(name: str) -> str:
    if not _OUTPUT_NAME.match(name) or ".." in name:
        raise ValueError(f"not an output name: {name!r}")
    return name


class StudyStore:
    """Files of each job under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "studies").mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):
            # Job ids are ours (uuid4 hex); anything else never names a folder.
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / "studies" / job_id

    def upload_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "upload"

    def create(self, job_id: str) -> Path:
        path = self.upload_dir(job_id)
        path.mkdir(parents=True, exist_ok=False)
        return path

    def exists(self, job_id: str) -> bool:
        try:
            return self.job_dir(job_id).is_dir()
        except ValueError:
            return False

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def clear_outputs(self, job_id: str) -> None:
        """Remove a partial result and masks before a job runs again."""
        shutil.rmtree(self.job_dir(job_id) / "masks", ignore_errors=True)
        shutil.rmtree(self.job_dir(job_id) / "outputs", ignore_errors=True)
        (self.job_dir(job_id) / "result.json").unlink(missing_ok=True)

    def write_result(self, job_id: str, result: StudyResult) -> None:
        self._write_atomic(self.job_dir(job_id) / "result.json",
                           result.model_dump_json().encode())

    def read_result(self, job_id: str) -> StudyResult | None:
        """The stored result, validated; a file that is not one is a StorageError."""
        path = self.job_dir(job_id) / "result.json"
        try:
            return StudyResult.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            raise StorageError(f"result of job {job_id} cannot be read") from exc

    def write_mask(self, job_id: str, index: int, mask: npt.NDArray[np.bool_]) -> None:
        """Store one slice's mask (at the slice's own size) as packed bits."""
        folder = self.job_dir(job_id) / "masks"
        folder.mkdir(exist_ok=True)
        header = np.array(mask.shape, dtype=np.uint32).tobytes()
        self._write_atomic(folder / f"{index}.bits", header + np.packbits(mask).tobytes())

    def read_mask(self, job_id: str, index: int, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
        """The stored mask of a slice, or an empty one of ``shape`` where none was stored."""
        path = self.job_dir(job_id) / "masks" / f"{index}.bits"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return np.zeros(shape, dtype=bool)
        rows, cols = (int(v) for v in np.frombuffer(raw[:8], dtype=np.uint32))
        bits = np.unpackbits(np.frombuffer(raw[8:], dtype=np.uint8), count=rows * cols)
        return bits.reshape(rows, cols).astype(bool)

    def write_output(self, job_id: str, name: str, data: bytes) -> None:
        """Keep an object made from the result (``seg.dcm``...), atomically."""
        folder = self.job_dir(job_id) / "outputs"
        folder.mkdir(exist_ok=True)
        self._write_atomic(folder / _output_name(name), data)

    def read_output(self, job_id: str, name: str) -> bytes | None:
        """An object kept by :meth:`write_output`, or None when there is none."""
        try:
            return (self.job_dir(job_id) / "outputs" / _output_name(name)).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"{name} of job {job_id} cannot be read") from exc

    def write_series(self, job_id: str, series: object) -> None:
        """Keep the header pass's result beside the upload (our own object, read by us only)."""
        self._write_atomic(self.job_dir(job_id) / "series.pickle", pickle.dumps(series))

    def read_series(self, job_id: str) -> object | None:
        """The series chosen at intake, or None when there is none or it cannot be read."""
        try:
            series: object = pickle.loads(  # noqa: S301 - written by us, above
                (self.job_dir(job_id) / "series.pickle").read_bytes()
            )
            return series
        except (OSError, pickle.UnpicklingError, AttributeError, EOFError, ImportError):
            return None

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    @staticmethod
    def _write_atomic(path: Path, payload: bytes) -> None:
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {path.name}: {exc.strerror}") from exc

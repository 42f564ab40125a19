"""What the app under test keeps, as the store's own server lists it: files under the data
directory, or the keys of the test's prefix in SeaweedFS (``BONEMETS_TEST_STORAGE=s3``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from api.config import Settings
from api.study.storage import open_study_store
from tests.seaweedfs import SeaweedS3


@dataclass(frozen=True)
class StorageUnderTest:
    """``s3`` and ``prefix`` when the app keeps its objects in the bucket; None on disk."""

    s3: SeaweedS3 | None = None
    prefix: str = ""

    @property
    def name(self) -> str:
        return "local" if self.s3 is None else "s3"

    def keys(self, settings: Settings, job_id: str | None = None) -> list[str]:
        """Every object (and, on disk, folder) under ``studies/`` or one job's folder."""
        under = f"studies/{job_id}/" if job_id else "studies/"
        if self.s3 is not None:
            keys = (key.removeprefix(f"{self.prefix}/") for key in self.s3.keys(self.prefix))
            return sorted(key for key in keys if key.startswith(under))
        folder = settings.data_dir / under
        return sorted(p.relative_to(settings.data_dir).as_posix() for p in folder.rglob("*"))

    def leftovers(self, settings: Settings) -> list[str]:
        """Whatever the store holds, and whatever local scratch it left: [] after a DELETE
        or a refused upload."""
        scratch = settings.scratch_dir or settings.data_dir / "scratch"
        return self.keys(settings) + sorted(str(p) for p in _files(scratch))

    def put(self, settings: Settings, key: str, data: bytes) -> None:
        open_study_store(settings).objects.put_bytes(key, data)

    def get(self, settings: Settings, key: str) -> bytes | None:
        return open_study_store(settings).objects.get_bytes(key)

    def remove(self, settings: Settings, key: str) -> None:
        open_study_store(settings).objects.delete_keys([key])


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []

"""Objects as files under a folder: the key is the path. The single-machine default."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from api.errors import StorageError

# Names our own atomic writes use while they are under way; never listed as objects.
PARTIAL = ".tmp-"


class FolderObjects:
    """Each object a file ``root/<key>``, written atomically (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or parts[0] == "/" or ".." in parts:
            raise ValueError(f"not an object key: {key!r}")
        return self.root.joinpath(*parts)

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self.path(key)
        try:
            # Only the last folder is made: a job's folder deleted meanwhile is not made again.
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write {path.name}: {exc.strerror}") from exc

    def put_files(self, items: Iterable[tuple[str, Path]]) -> None:
        try:
            for key, source in items:
                target = self.path(key)
                if target != source:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
        except OSError as exc:
            raise StorageError(f"cannot store a file: {exc.strerror}") from exc

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {PurePosixPath(key).name}: {exc.strerror}") from exc

    def download_files(self, items: Iterable[tuple[str, Path]]) -> None:
        try:
            for key, target in items:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.path(key), target)
        except OSError as exc:
            raise StorageError(f"cannot read a stored file: {exc.strerror}") from exc

    def keys(self, prefix: str) -> Iterator[str]:
        folder = self.path(prefix)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith(PARTIAL):
                yield path.relative_to(self.root).as_posix()

    def delete_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path(prefix)
        count = sum(1 for _ in self.keys(prefix)) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def make_folder(self, prefix: str) -> None:
        self.path(prefix).mkdir(parents=True, exist_ok=True)

    def has_folder(self, prefix: str) -> bool:
        return self.path(prefix).is_dir()

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def describe(self) -> str:
        return str(self.root)

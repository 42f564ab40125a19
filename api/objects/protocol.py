"""What the study flow needs of an object store; a folder and an S3 bucket both provide it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol


class ObjectStore(Protocol):
    """Objects by key. A missing object reads as None; any other failure is a StorageError."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` whole: a reader sees the old object or the new one. On
        disk only the key's last folder is made: an object under a job's folder deleted
        meanwhile is refused (StorageError), not made again."""

    def put_files(self, items: Iterable[tuple[str, Path]]) -> None:
        """Store each local file at its key, streamed from disk (large ones in parts)."""

    def get_bytes(self, key: str) -> bytes | None:
        """The object at ``key``, or None when there is none (for small objects)."""

    def download_files(self, items: Iterable[tuple[str, Path]]) -> None:
        """Write each object to its local path, streamed to disk; StorageError if one is
        missing."""

    def keys(self, prefix: str) -> Iterator[str]:
        """Every object's key under ``prefix`` (a folder: ``studies/<job>/``), folders left
        out, in no set order."""

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Remove these objects; a missing one is no error."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``, and the folder itself; how many went."""

    def make_folder(self, prefix: str) -> None:
        """Make ``prefix`` exist before anything is in it (:meth:`has_folder` says so)."""

    def has_folder(self, prefix: str) -> bool:
        """Whether ``prefix`` was made and not deleted since."""

    def local_path(self, key: str) -> Path | None:
        """Where ``key`` lies on this machine's disk, for a folder store; None otherwise."""

    def describe(self) -> str:
        """Where the objects are, for logs (no credentials)."""

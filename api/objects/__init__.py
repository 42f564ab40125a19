"""Objects by key, in a folder on disk (the default) or an S3-compatible bucket.

Keys are ``/``-separated relative paths (``studies/<job>/result.json``); a folder store keeps
each at that path under its root, so the default layout on disk is the one it always was.
This room knows nothing of studies: :mod:`api.study.storage` lays a job's objects out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api.objects.folder import FolderObjects
from api.objects.protocol import ObjectStore

__all__ = ["FolderObjects", "ObjectStore", "S3Location", "S3Objects", "open_objects"]


def open_objects(url: str | None, root: Path, *, part_mb: int = 16) -> ObjectStore:
    """The store ``url`` names: unset, the folder ``root``; ``s3://bucket/prefix``, that
    bucket (endpoint, region and credentials from the usual AWS variables), its objects
    sent in parts of ``part_mb`` MiB once larger than that."""
    if not url:
        return FolderObjects(root)
    from api.objects.s3 import S3Location, S3Objects

    return S3Objects(S3Location.parse(url), part_bytes=part_mb << 20)


def __getattr__(name: str) -> Any:
    # boto3 (17 MB resident) is imported where a bucket is used, not by every process.
    if name in ("S3Location", "S3Objects"):
        from api.objects import s3

        return getattr(s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Objects by key, in a folder on disk (the default) or an S3-compatible bucket.

Keys are ``/``-separated relative paths (``studies/<job>/result.json``); a folder store keeps
each at that path under its root, so the default layout on disk is the one it always was.
This room knows nothing of studies: :mod:`api.study.storage` lays a job's objects out.
"""

from __future__ import annotations

from pathlib import Path

from api.objects.folder import FolderObjects
from api.objects.protocol import ObjectStore
from api.objects.s3 import S3Location, S3Objects

__all__ = ["FolderObjects", "ObjectStore", "S3Location", "S3Objects", "open_objects"]


def open_objects(url: str | None, root: Path, *, part_mb: int = 16) -> ObjectStore:
    """The store ``url`` names: unset, the folder ``root``; ``s3://bucket/prefix``, that
    bucket (endpoint, region and credentials from the usual AWS variables), its objects
    sent in parts of ``part_mb`` MiB once larger than that."""
    if not url:
        return FolderObjects(root)
    return S3Objects(S3Location.parse(url), part_bytes=part_mb << 20)

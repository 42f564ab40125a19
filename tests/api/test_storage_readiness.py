"""/readyz tells an object store that cannot be used: unreachable, or its bucket missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import Settings
from api.http.app import create_app
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.seaweedfs import SeaweedS3, _free_ports


def _ready(settings: Settings) -> tuple[int, str | None]:
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())
    with CheckedClient(app) as client:
        assert client.get("/healthz").status_code == 200  # alive all the same
        response = client.get("/readyz")
        return response.status_code, response.json().get("detail")


def test_an_unreachable_object_store_is_not_ready(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = _free_ports(1)  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    status, detail = _ready(Settings(data_dir=tmp_path / "d", storage_url="s3://scans/x"))
    assert status == 503
    assert detail is not None and "object store" in detail


def test_a_missing_bucket_is_not_ready_and_the_real_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seaweedfs: SeaweedS3
) -> None:
    prefix = seaweedfs.new_prefix()
    for name, value in seaweedfs.environment(prefix).items():
        monkeypatch.setenv(name, value)
    missing = Settings(data_dir=tmp_path / "a", storage_url="s3://no-such-bucket-here/x")
    status, detail = _ready(missing)
    assert status == 503
    assert detail is not None and "NoSuchBucket" in detail
    assert _ready(Settings(data_dir=tmp_path / "b")) == (200, None)

"""A decompression bomb sent through the API: 413 problem+json at once, nothing allocated."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import api.dicom.pixels
from tests.api.conftest import as_files
from tests.unit.api.dicom.test_bomb import declaring_huge


def resident_bytes() -> int:
    """This process's resident set (Linux), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_tiny_jpeg2000_bomb_is_413_before_any_decoding(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = declaring_huge(tmp_path)

    def no_decoding(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the decoder was reached")

    monkeypatch.setattr(api.dicom.pixels, "pixel_array", no_decoding)
    before = resident_bytes()
    started = time.perf_counter()
    response = client.post("/v1/studies", files=as_files([bomb]))
    elapsed = time.perf_counter() - started
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:bonemets:problem:image-too-large"
    assert "65535" in problem["detail"]
    assert elapsed < 2.0
    # 65535 x 65535 x 10,000 frames of int16 would be 86 TB; a single frame 8.6 GB.
    assert resident_bytes() - before < 64 << 20

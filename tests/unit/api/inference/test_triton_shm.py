"""Which Triton URLs count as this machine, for shared memory."""

from __future__ import annotations

import pytest

from api.inference.triton_shm import is_local


@pytest.mark.parametrize(
    ("url", "local"),
    [("127.0.0.1:8001", True), ("localhost:8001", True), ("[::1]:8001", True),
     ("triton:8001", False), ("10.0.0.5:8001", False), ("triton.internal", False)],
)
def test_is_local(url: str, local: bool) -> None:
    assert is_local(url) is local

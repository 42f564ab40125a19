"""Several Triton endpoints as one model: spread, failover, cooldown, re-resolution. The
endpoints are fakes at the model protocol seam; tests/integration/test_triton.py runs the
balancer against a real tritonserver beside a dead endpoint."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from api.errors import InferenceUnavailable, ModelError
from api.inference.balancer import BalancedSegmenter, resolve, split_endpoints
from api.inference.protocol import Segmentation
from tests.api.fakes import BrightBoneModel

BATCH = np.zeros((1, 512, 512), dtype=np.int16)


class Endpoint(BrightBoneModel):
    """A fake endpoint that can be down, or refuse as a model would."""

    def __init__(self, url: str, delay_s: float = 0.0) -> None:
        super().__init__(delay_s=delay_s)
        self.url = url
        self.down = False
        self.refuse = False
        self.closed = False

    async def segment(self, hounsfield: np.ndarray) -> Segmentation:
        if self.down:
            self.calls += 1
            raise InferenceUnavailable(f"{self.url} down")
        if self.refuse:
            self.calls += 1
            raise ModelError("bad shapes")
        return await super().segment(hounsfield)

    async def ready(self) -> bool:
        return not self.down

    async def close(self) -> None:
        self.closed = True


class Fleet:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.made: dict[str, Endpoint] = {}

    def connect(self, url: str) -> Endpoint:
        self.made[url] = Endpoint(url, self.delay_s)
        return self.made[url]


def balanced(fleet: Fleet, urls: str = "a:1,b:1", **kwargs: object) -> BalancedSegmenter:
    return BalancedSegmenter(urls, fleet.connect, resolver=lambda h, p: [f"{h}:{p}"],
                             **kwargs)  # type: ignore[arg-type]


def test_endpoints_are_host_port_pairs() -> None:
    assert split_endpoints("triton-0:8001, triton-1:8001,") == [("triton-0", 8001),
                                                                ("triton-1", 8001)]
    assert split_endpoints("[::1]:8001") == [("::1", 8001)]
    for bad in ("", "triton", "triton:http", "triton:0", ":8001"):
        with pytest.raises(ValueError):
            split_endpoints(bad)


def test_a_name_resolves_to_each_of_its_addresses() -> None:
    assert resolve("127.0.0.1", 8001) == ["127.0.0.1:8001"]
    assert "127.0.0.1:9" in resolve("localhost", 9)


def test_concurrent_requests_spread_over_the_endpoints() -> None:
    fleet = Fleet(delay_s=0.05)
    model = balanced(fleet)

    async def run() -> None:
        await asyncio.gather(*(model.segment(BATCH) for _ in range(8)))

    asyncio.run(run())
    assert {url: e.calls for url, e in fleet.made.items()} == {"a:1": 4, "b:1": 4}


def test_an_endpoint_that_is_down_is_passed_over_then_tried_again_after_its_cooldown() -> None:
    fleet = Fleet()
    model = balanced(fleet, cooldown_s=0.2)
    assert model.urls == ["a:1", "b:1"]  # both connected
    fleet.made["a:1"].down = True

    async def run(n: int) -> None:
        for _ in range(n):
            answer = await model.segment(BATCH)
            assert answer.mask.shape == (1, 512, 512)

    asyncio.run(run(6))
    assert (fleet.made["a:1"].calls, fleet.made["b:1"].calls) == (1, 6)  # out after one try
    fleet.made["a:1"].down = False
    time.sleep(0.25)
    asyncio.run(run(2))
    assert fleet.made["a:1"].calls == 2  # back in once its cooldown is over


def test_every_endpoint_down_is_unavailable_and_a_model_refusal_is_not_failed_over() -> None:
    fleet = Fleet()
    model = balanced(fleet)
    assert len(model.urls) == 2
    for endpoint in fleet.made.values():
        endpoint.down = True
    with pytest.raises(InferenceUnavailable):
        asyncio.run(model.segment(BATCH))
    assert asyncio.run(model.ready()) is False
    for endpoint in fleet.made.values():
        endpoint.down, endpoint.refuse = False, True
    with pytest.raises(ModelError):
        asyncio.run(model.segment(BATCH))
    assert sum(e.calls for e in fleet.made.values()) == 3  # the refusal was asked once


def test_names_are_resolved_again_and_pods_that_left_are_closed() -> None:
    fleet = Fleet()
    pods = [["10.0.0.1:8001"]]
    model = BalancedSegmenter("triton:8001", fleet.connect, resolver=lambda h, p: pods[-1],
                              refresh_s=0.05)
    assert model.urls == ["10.0.0.1:8001"]
    pods.append(["10.0.0.2:8001", "10.0.0.3:8001"])
    time.sleep(0.06)
    assert model.urls == ["10.0.0.2:8001", "10.0.0.3:8001"]
    pods.append([])  # a DNS answer with nothing in it forgets no pod
    time.sleep(0.06)
    assert model.urls == ["10.0.0.2:8001", "10.0.0.3:8001"]
    asyncio.run(model.close())
    assert all(endpoint.closed for endpoint in fleet.made.values())

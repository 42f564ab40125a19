"""The decode pool survives a worker killed under it (out of memory, a native decoder crash)."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

from prometheus_client import REGISTRY

from api.study.decoder_pool import DecoderPool


def _sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_a_killed_worker_breaks_one_call_and_the_next_gets_a_fresh_pool() -> None:
    pool = DecoderPool(1)
    restarts = REGISTRY.get_sample_value("bonemets_decoder_pool_restarts_total") or 0.0
    try:
        first = pool.submit(os.getpid).result(timeout=60)
        doomed = pool.submit(_sleep_then_pid, 30.0)
        time.sleep(0.5)
        os.kill(first, signal.SIGKILL)
        try:
            doomed.result(timeout=60)
            raise AssertionError("the call whose worker was killed returned")
        except BrokenProcessPool:
            pass
        # A plain ProcessPoolExecutor refuses every call from here on; this one starts over.
        second = pool.submit(os.getpid).result(timeout=60)
        assert second != first
        assert pool.respawns == 1
        assert REGISTRY.get_sample_value("bonemets_decoder_pool_restarts_total") == restarts + 1
        assert pool.submit(_sleep_then_pid, 0.0).result(timeout=60) == second
    finally:
        pool.shutdown(wait=True)

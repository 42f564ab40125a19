"""The decode process pool, replaced when a worker dies.

A ``ProcessPoolExecutor`` whose worker is killed (out of memory, a crash in a native
decoder) is broken for good: every later submit raises ``BrokenProcessPool``. This wrapper
starts a fresh pool on the next submit instead, so one bad night does not turn every later
upload into an error while the health checks still say 200.

The pool also owns the shared memory its workers decode into (:meth:`DecoderPool.slots`,
:mod:`api.study.decode_slots`), freed when it shuts down.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from api import metrics
from api.study.decode_slots import DecodeSlots

log = logging.getLogger(__name__)

T = TypeVar("T")


class DecoderPool(Executor):
    """A spawned process pool that replaces itself once broken."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self.respawns = 0
        self._slots: dict[tuple[int, int], DecodeSlots] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the parent runs threads (event loop, gRPC) that fork would copy.
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                self._respawn_locked()
                return self._pool.submit(fn, *args, **kwargs)

    def _respawn_locked(self) -> None:
        broken = self._pool
        self._pool = self._new_pool()
        self.respawns += 1
        metrics.decoder_restarts.inc()
        log.error("a decode worker died; started a fresh decode pool (%d so far)", self.respawns)
        broken.shutdown(wait=False, cancel_futures=True)

    def slots(self, count: int, slices: int, size: int) -> DecodeSlots:
        """The shared memory that batches of ``slices`` x ``size`` x ``size`` are decoded
        into, ``count`` batches at a time; made on first use, then kept (one per shape)."""
        with self._lock:
            block = self._slots.get((slices, size))
            if block is None:
                block = self._slots[(slices, size)] = _fitting_slots(count, slices, size)
            return block

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
            for block in self._slots.values():
                block.close()
            self._slots.clear()


def _fitting_slots(count: int, slices: int, size: int) -> DecodeSlots:
    """``count`` slots, or as many as /dev/shm has room for (halving; at least one)."""
    while True:
        try:
            return DecodeSlots(count, slices, size)
        except OSError as exc:
            if count == 1:
                raise
            log.warning("no room in /dev/shm for %d decode slots (%s); trying %d: raise the "
                        "container's shared memory", count, exc, count // 2)
            count //= 2

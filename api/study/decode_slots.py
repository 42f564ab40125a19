"""Shared memory that decode workers write a batch's HU into, so that no pixels are pickled.

Pickling a decoded batch back from the worker cost about as much CPU as decoding it, and
unpickling it as much again in the gateway. Instead the decode pool owns one block of
``multiprocessing.shared_memory`` (:meth:`api.study.decoder_pool.DecoderPool.slots`), cut
into slots of a batch each, one per batch in flight across the jobs: a worker maps the block
once, decodes straight into its slot (:func:`api.study.decoding.decode_batch`) and returns
only small metadata; the pipeline then hands a view of the slot to the model, which copies it
once into its own input (Triton's shared-memory region, or a protobuf). The block lives as
long as the pool, so its pages are touched once, not once a batch.

Spawned workers share the parent's ``resource_tracker`` (``multiprocessing`` passes it on),
so their attaching registers a name the parent's ``unlink`` unregisters: nothing is unlinked
twice or reported leaked, and a gateway that dies leaves the tracker to unlink the block.

A container's ``/dev/shm`` is small (64 MiB unless raised), and a write beyond it kills the
writer with SIGBUS: the block's pages are reserved when it is made, so that a short
``/dev/shm`` is an ``OSError`` then (and fewer slots), never a dead worker later.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotAddress:
    """Where a worker writes one batch: a block's name and a byte offset into it."""

    block: str
    offset: int


def slot_array(buffer: Any, address: SlotAddress, slices: int, size: int) -> npt.NDArray[np.int16]:
    """The (slices, size, size) int16 HU of the slot at ``address`` in a mapped block."""
    return np.ndarray((slices, size, size), np.int16, buffer=buffer, offset=address.offset)


class DecodeSlots:
    """A block of ``slots`` slots of ``slices`` x ``size`` x ``size`` int16 HU each."""

    def __init__(self, slots: int, slices: int, size: int) -> None:
        self.size = size
        self._slot_bytes = slices * size * size * np.dtype(np.int16).itemsize
        self._memory = SharedMemory(create=True, size=slots * self._slot_bytes)
        try:
            _reserve(self._memory, slots * self._slot_bytes)
        except OSError:
            self._memory.close()
            self._memory.unlink()
            raise
        self.slots = slots
        # Last released, first reused: the pages in use stay few (and warm in the workers'
        # caches) while fewer jobs than the block was made for are running.
        self._free: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        for index in reversed(range(slots)):
            self._free.put_nowait(index)

    async def acquire(self) -> int:
        """A free slot's index; waits while every slot holds a batch in flight."""
        return await self._free.get()

    def release(self, index: int, after: Future[Any] | None = None) -> None:
        """Give a slot back: now, or once ``after`` (a decode into it that was abandoned but
        runs on in its worker) has ended."""
        if after is None or after.done():
            self._free.put_nowait(index)
            return
        loop = asyncio.get_running_loop()

        def give_back(_: Future[Any]) -> None:
            try:
                loop.call_soon_threadsafe(self._free.put_nowait, index)
            except RuntimeError:
                pass  # the event loop is gone, and every job with it

        after.add_done_callback(give_back)

    def address(self, index: int) -> SlotAddress:
        return SlotAddress(self._memory.name, index * self._slot_bytes)

    def view(self, index: int, slices: int) -> npt.NDArray[np.int16]:
        """The slot's first ``slices`` slices, as the worker wrote them."""
        return slot_array(self._memory.buf, self.address(index), slices, self.size)

    def close(self) -> None:
        """Unmap and unlink the block (the pool's workers have stopped)."""
        try:
            self._memory.close()
        except BufferError:
            # A view still held (by a traceback): the mapping goes with the last view.
            log.debug("a view of %s outlives the pool", self._memory.name)
        self._memory.unlink()


def _reserve(memory: SharedMemory, size: int) -> None:
    """Allocate the block's pages now, where it is a file under /dev/shm (Linux): ENOSPC
    here rather than SIGBUS at the first write past the end of the space."""
    path = Path("/dev/shm") / memory.name.lstrip("/")
    if not path.exists():
        return
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(descriptor, 0, size)
    finally:
        os.close(descriptor)

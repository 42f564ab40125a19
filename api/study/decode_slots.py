"""Shared memory that decode workers write a batch's HU into, so that no pixels are pickled.

Pickling a decoded batch back from the worker cost about as much CPU as decoding it, and
unpickling it as much again in the gateway. Instead each job owns one block of
``multiprocessing.shared_memory``, cut into slots of a batch each, one per batch in flight:
a worker maps the block by name, decodes straight into its slot
(:func:`api.study.decoding.decode_batch`) and returns only small metadata; the pipeline then
hands a view of the slot to the model, which copies it once into its own input (Triton's
shared-memory region, or a protobuf).

Spawned workers share the parent's ``resource_tracker`` (``multiprocessing`` passes it on),
so their attaching registers a name the parent's ``unlink`` unregisters: nothing is unlinked
twice or reported leaked. A block is unlinked only once no decode of it is still running, and
a process that dies leaves the tracker to unlink it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
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


def close_quietly(memory: SharedMemory) -> None:
    """Unmap ``memory``; where a view of it still lives (held by a traceback), leave the
    mapping to go with the last view instead of raising over the error being reported."""
    try:
        memory.close()
    except BufferError:
        log.debug("a view of %s outlives its use; unmapped when it goes", memory.name)


class DecodeSlots:
    """One job's block: ``slots`` slots of ``slices`` x ``size`` x ``size`` int16 HU."""

    def __init__(self, slots: int, slices: int, size: int) -> None:
        self.size = size
        self._slot_bytes = slices * size * size * np.dtype(np.int16).itemsize
        self._memory = SharedMemory(create=True, size=slots * self._slot_bytes)
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for index in range(slots):
            self._free.put_nowait(index)
        self._decodes: set[Future[Any]] = set()

    async def acquire(self) -> int:
        """A free slot's index; waits while every slot holds a batch in flight."""
        return await self._free.get()

    def release(self, index: int) -> None:
        """Give a slot back once nothing reads or writes it any more."""
        self._free.put_nowait(index)

    def address(self, index: int) -> SlotAddress:
        return SlotAddress(self._memory.name, index * self._slot_bytes)

    def view(self, index: int, slices: int) -> npt.NDArray[np.int16]:
        """The slot's first ``slices`` slices, as the worker wrote them."""
        return slot_array(self._memory.buf, self.address(index), slices, self.size)

    def track(self, decode: Future[Any]) -> None:
        """A decode writing into this block: :meth:`close` waits for it."""
        self._decodes.add(decode)
        decode.add_done_callback(self._decodes.discard)

    async def close(self) -> None:
        """Free the block once every decode into it has ended (one cancelled mid-way runs on
        in its worker)."""
        if self._decodes:
            await asyncio.to_thread(wait_all, list(self._decodes))
        close_quietly(self._memory)
        self._memory.unlink()

"""System shared memory between the gateway and a Triton on the same host.

Over plain gRPC each batch of HU is copied into a protobuf and serialised (about 1 ms of
gateway CPU a slice, measured); through a registered region it is one ``memcpy`` and the
request carries only the region's name. Regions are made lazily, one per request in flight,
each holding a batch's input and both outputs; a Triton that restarted forgets them, so any
failure drops the pool and the next request registers afresh.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
UNREGISTER_TIMEOUT_S = 5.0


def is_local(url: str) -> bool:
    """True when a ``host:port`` gRPC URL names this machine."""
    host = url.rsplit(":", 1)[0] if url.count(":") == 1 or url.startswith("[") else url
    return host.strip() in LOCAL_HOSTS


@dataclass
class Region:
    """One registered region: input at offset 0, then MASK, then PROBABILITY."""

    name: str
    handle: Any
    input_bytes: int
    mask_bytes: int
    probability_bytes: int

    @property
    def mask_offset(self) -> int:
        return self.input_bytes

    @property
    def probability_offset(self) -> int:
        return self.input_bytes + self.mask_bytes


class SharedMemoryPool:
    """Regions sized for ``max_slices`` a request, at most ``slots`` of them.

    A pool that failed once is retired: it hands out nothing more, frees its idle regions at
    once and the others as their requests end, while a fresh pool serves new requests.
    """

    def __init__(self, client: Any, *, max_slices: int, input_slice_bytes: int,
                 mask_slice_bytes: int, probability_slice_bytes: int, slots: int = 8) -> None:
        self._client = client
        self._sizes = (max_slices * input_slice_bytes, max_slices * mask_slice_bytes,
                       max_slices * probability_slice_bytes)
        self._slots = slots
        self._created = 0
        self._retired = False
        self._free: asyncio.Queue[Region] = asyncio.Queue()
        self._prefix = f"bonemets-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def acquire(self) -> Region:
        if self._free.empty() and self._created < self._slots:
            # Counted before the await, so concurrent requests never make the same region.
            self._created += 1
            try:
                return await self._create(self._created - 1)
            except BaseException:
                self._created -= 1
                raise
        return await self._free.get()

    async def release(self, region: Region) -> None:
        if self._retired:
            await self._destroy(region)
        else:
            self._free.put_nowait(region)

    async def discard(self, region: Region) -> None:
        """Free a region whose request was abandoned: Triton may still write into it."""
        self._created -= 1
        await self._destroy(region)

    async def retire(self) -> None:
        self._retired = True
        while not self._free.empty():
            await self._destroy(self._free.get_nowait())

    close = retire

    async def _create(self, index: int) -> Region:
        import tritonclient.utils.shared_memory as shm

        name = f"{self._prefix}-{index}"
        size = sum(self._sizes)
        handle = shm.create_shared_memory_region(name, f"/{name}", size)
        try:
            await self._client.register_system_shared_memory(
                name, f"/{name}", size, client_timeout=UNREGISTER_TIMEOUT_S
            )
        except BaseException:
            shm.destroy_shared_memory_region(handle)
            raise
        return Region(name, handle, *self._sizes)

    async def _destroy(self, region: Region) -> None:
        import tritonclient.utils.shared_memory as shm

        try:
            await self._client.unregister_system_shared_memory(
                region.name, client_timeout=UNREGISTER_TIMEOUT_S
            )
        except Exception:  # noqa: BLE001 - a restarted or stopped Triton no longer knows it
            log.debug("could not unregister %s", region.name)
        shm.destroy_shared_memory_region(region.handle)


def write_input(region: Region, tensor: npt.NDArray[Any]) -> None:
    import tritonclient.utils.shared_memory as shm

    shm.set_shared_memory_region(region.handle, [tensor])


def read_output(region: Region, offset: int, shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    import tritonclient.utils.shared_memory as shm

    view = shm.get_contents_as_numpy(region.handle, np.uint8, list(shape), offset=offset)
    return np.array(view, dtype=np.uint8, copy=True)  # the region is reused at once

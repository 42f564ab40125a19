"""The segmentation model behind Triton, over gRPC (the service's way).

:class:`TritonSegmenter` sends int16 HU (or float16 HU, when the model's metadata says so:
the GPU variants) as binary tensors, through shared memory when Triton is local, and
unpacks the bit-packed MASK. Reading Triton's answers (config, outputs, errors) against the
tensor contract is :mod:`api.inference.triton_answers`'s business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from api import metrics
from api.errors import InferenceTimeout, InferenceUnavailable, ModelError
from api.inference.contract import (
    INPUT_NAME,
    MASK_OUTPUT,
    MODEL_NAME,
    PROBABILITY_OUTPUT,
    PROBABILITY_STRIDE,
)
from api.inference.processing import unpack_mask
from api.inference.protocol import ModelInfo, Segmentation
from api.inference.triton_answers import (
    check_output_shape,
    parse_model,
    parse_outputs,
    translate_error,
    triton_dtype,
)
from api.inference.triton_shm import Region, SharedMemoryPool, read_output, write_input

if TYPE_CHECKING:
    from tritonclient.grpc.aio import InferenceServerClient

__all__ = ["TritonSegmenter"]

log = logging.getLogger(__name__)

def error_kind(exc: Exception) -> str:
    """The metrics' name for a failed inference request."""
    if isinstance(exc, InferenceTimeout):
        return "timeout"
    return "unavailable" if isinstance(exc, InferenceUnavailable) else "model"


class TritonSegmenter:
    """A :class:`~api.inference.protocol.SegmentationModel` served by Triton over gRPC."""

    def __init__(
        self,
        url: str,
        model_name: str = MODEL_NAME,
        timeout_s: float = 60.0,
        *,
        model_version: str = "",
        shared_memory: bool = False,
        shared_memory_slices: int = 8,
        shared_memory_slots: int = 8,
    ) -> None:
        self.url = url
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.model_version = model_version
        # System shared memory with a co-located Triton (see triton_shm); off after a failure
        # to register, e.g. a Triton in another container without the host's /dev/shm.
        self.shared_memory = shared_memory
        self._shm_slices = shared_memory_slices
        self._shm_slots = shared_memory_slots
        self._pool: SharedMemoryPool | None = None
        self._client: InferenceServerClient | None = None
        self._info: ModelInfo | None = None
        self._input_dtype: type[np.generic] | None = None

    def _connection(self) -> InferenceServerClient:
        # Created on first use, inside the running event loop that grpc.aio binds it to.
        if self._client is None:
            from tritonclient.grpc.aio import InferenceServerClient

            self._client = InferenceServerClient(self.url)
        return self._client

    async def _call(self, action: str, call: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return await call
        except InferenceServerException as exc:
            raise translate_error(exc, action) from exc
        except TimeoutError as exc:
            raise InferenceTimeout(f"Triton {action} timed out") from exc

    async def info(self) -> ModelInfo:
        """The model's config parameters and input type (asked once, then cached)."""
        if self._info is None:
            client = self._connection()
            response = await self._call(
                "model config",
                client.get_model_config(
                    self.model_name, self.model_version, as_json=True,
                    client_timeout=self.timeout_s,
                ),
            )
            metadata = await self._call(
                "model metadata",
                client.get_model_metadata(
                    self.model_name, self.model_version, as_json=True,
                    client_timeout=self.timeout_s,
                ),
            )
            self._info, self._input_dtype = parse_model(response["config"], metadata)
        return self._info

    async def ready(self) -> bool:
        """True when Triton says the model is ready; False when it says no or is unreachable."""
        from tritonclient.utils import InferenceServerException

        try:
            return bool(
                await self._connection().is_model_ready(
                    self.model_name, self.model_version, client_timeout=min(self.timeout_s, 5.0)
                )
            )
        except (TimeoutError, InferenceServerException):
            return False

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        """Segment a batch of int16 HU slices (N, 512, 512) on Triton."""
        from tritonclient.grpc import InferInput, InferRequestedOutput

        info = await self.info()
        if hounsfield.ndim != 3 or hounsfield.shape[1:] != (info.input_size, info.input_size):
            raise ValueError(f"expected HU of shape (N, {info.input_size}, {info.input_size}), "
                             f"got {hounsfield.shape}")
        if not 1 <= len(hounsfield) <= info.max_batch_size:
            raise ValueError(f"batch of {len(hounsfield)} slices; 1..{info.max_batch_size} allowed")
        assert self._input_dtype is not None
        tensor = np.ascontiguousarray(hounsfield, dtype=self._input_dtype)
        pool = await self._shared_pool() if len(tensor) <= self._shm_slices else None
        if pool is not None:
            return await self._segment_shared(pool, tensor, info.input_size)
        request = InferInput(INPUT_NAME, list(tensor.shape), triton_dtype(self._input_dtype))
        request.set_data_from_numpy(tensor)
        outputs = [InferRequestedOutput(MASK_OUTPUT), InferRequestedOutput(PROBABILITY_OUTPUT)]
        result = await self._infer([request], outputs)
        return parse_outputs(result, len(hounsfield), info.input_size)

    async def _infer(self, inputs: list[Any], outputs: list[Any]) -> Any:
        """One inference request, counted in the metrics under this endpoint."""
        metrics.triton_batch.labels(self.url).observe(inputs[0].shape()[0])
        began = time.perf_counter()
        try:
            return await self._call(
                "inference",
                self._connection().infer(
                    self.model_name, inputs, model_version=self.model_version,
                    outputs=outputs, client_timeout=self.timeout_s,
                ),
            )
        except (InferenceTimeout, InferenceUnavailable, ModelError) as exc:
            metrics.triton_errors.labels(self.url, error_kind(exc)).inc()
            raise
        finally:
            metrics.triton_duration.labels(self.url).observe(time.perf_counter() - began)

    async def _shared_pool(self) -> SharedMemoryPool | None:
        if not self.shared_memory:
            return None
        if self._pool is None:
            size = (await self.info()).input_size
            self._pool = SharedMemoryPool(
                self._connection(), max_slices=self._shm_slices,
                input_slice_bytes=size * size * np.dtype(self._input_dtype).itemsize,
                mask_slice_bytes=size * size // 8,
                probability_slice_bytes=(size // PROBABILITY_STRIDE) ** 2,
                slots=self._shm_slots,
            )
        return self._pool

    async def _segment_shared(
        self, pool: SharedMemoryPool, tensor: npt.NDArray[Any], size: int
    ) -> Segmentation:
        """One request through a shared-memory region; plain gRPC for good when regions
        cannot be registered at all."""
        from tritonclient.utils import InferenceServerException

        try:
            region = await pool.acquire()
        except (InferenceServerException, OSError) as exc:
            log.warning("Triton shared memory unavailable (%s); using plain gRPC", exc)
            self.shared_memory, self._pool = False, None
            await pool.retire()
            return await self.segment(tensor)
        pooled = size // PROBABILITY_STRIDE
        shapes: dict[str, tuple[int, ...]] = {MASK_OUTPUT: (len(tensor), size, size // 8),
                  PROBABILITY_OUTPUT: (len(tensor), pooled, pooled)}
        offsets = {MASK_OUTPUT: region.mask_offset, PROBABILITY_OUTPUT: region.probability_offset}
        try:
            write_input(region, tensor)
            result = await self._infer(*self._shared_tensors(region, tensor, shapes, offsets))
            outputs = {}
            for name, shape in shapes.items():
                check_output_shape(result, name, shape)
                outputs[name] = read_output(region, offsets[name], shape)
        except asyncio.CancelledError:
            await asyncio.shield(pool.discard(region))
            raise
        except Exception as exc:
            # A restarted Triton forgets the regions: a fresh pool registers afresh.
            if self._pool is pool:
                self._pool = None
            await pool.retire()
            await pool.release(region)
            if isinstance(exc, ModelError) and "shared memory" in exc.detail.lower():
                raise InferenceUnavailable(exc.detail) from exc
            raise
        await pool.release(region)
        return Segmentation(mask=unpack_mask(outputs[MASK_OUTPUT], size),
                            probability=outputs[PROBABILITY_OUTPUT])

    def _shared_tensors(
        self, region: Region, tensor: npt.NDArray[Any],
        shapes: dict[str, tuple[int, ...]], offsets: dict[str, int],
    ) -> tuple[list[Any], list[Any]]:
        from tritonclient.grpc import InferInput, InferRequestedOutput

        request = InferInput(INPUT_NAME, list(tensor.shape), triton_dtype(tensor.dtype.type))
        request.set_shared_memory(region.name, tensor.nbytes)
        outputs = []
        for name, shape in shapes.items():
            output = InferRequestedOutput(name)
            output.set_shared_memory(region.name, int(np.prod(shape)), offsets[name])
            outputs.append(output)
        return [request], outputs

    async def close(self) -> None:
        """Free shared memory and close the gRPC channel (a later call opens a new one)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

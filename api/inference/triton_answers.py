"""Triton's answers read against the tensor contract (:mod:`api.inference.contract`).

The model's config and metadata become :class:`~api.inference.protocol.ModelInfo` and the
HU input's dtype; MASK and PROBABILITY outputs become a
:class:`~api.inference.protocol.Segmentation`; tritonclient's exceptions become the bonemets
error tree: no connection -> InferenceUnavailable, deadline -> InferenceTimeout, anything
that breaks the contract -> ModelError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from api.errors import InferenceTimeout, InferenceUnavailable, ModelError
from api.inference.contract import (
    INPUT_NAME,
    INPUT_SIZE,
    MASK_OUTPUT,
    PROBABILITY_OUTPUT,
    PROBABILITY_STRIDE,
    parse_windows,
)
from api.inference.processing import unpack_mask
from api.inference.protocol import ModelInfo, Segmentation

# Triton datatype of the HU input -> numpy dtype we send it in.
INPUT_DTYPES: dict[str, type[np.generic]] = {"INT16": np.int16, "FP16": np.float16}
_UNAVAILABLE = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND", "StatusCode.CANCELLED"}


def translate_error(exc: Any, action: str) -> InferenceUnavailable | ModelError:
    """Map a tritonclient ``InferenceServerException`` to the bonemets error tree."""
    status = exc.status()
    detail = f"Triton {action} failed ({status}): {exc.message()}"
    if status == "StatusCode.DEADLINE_EXCEEDED":
        return InferenceTimeout(detail)
    if status is None or status in _UNAVAILABLE:
        return InferenceUnavailable(detail)
    return ModelError(detail)


def triton_dtype(dtype: type[np.generic]) -> str:
    """Triton's name for a numpy input dtype (``np.int16`` -> ``"INT16"``)."""
    return next(name for name, known in INPUT_DTYPES.items() if known is dtype)


def parse_model(
    config: dict[str, Any], metadata: dict[str, Any]
) -> tuple[ModelInfo, type[np.generic]]:
    """ModelInfo from the model config (as JSON) and the HU input dtype from its metadata."""
    try:
        parameters = {
            key: value["string_value"] for key, value in config.get("parameters", {}).items()
        }
        hu = next(tensor for tensor in metadata["inputs"] if tensor["name"] == INPUT_NAME)
        dtype = INPUT_DTYPES[hu["datatype"]]
        info = ModelInfo(
            name=config["name"],
            version=parameters.get("model_version", ""),
            input_size=int(parameters.get("input_size", INPUT_SIZE)),
            windows=parse_windows(parameters["windows"]),
            threshold=float(parameters["threshold"]),
            max_batch_size=int(config.get("max_batch_size", 0)),
            platform=config.get("platform") or config.get("backend", ""),
        )
    except (KeyError, StopIteration, ValueError) as exc:
        raise ModelError(f"model config lacks what bonemets needs: {exc!r}") from exc
    if info.max_batch_size < 1:
        raise ModelError("model must batch (max_batch_size >= 1)")
    return info, dtype


def _output(result: Any, name: str, shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    try:
        array = result.as_numpy(name)
    except ValueError as exc:  # raw bytes that do not fit the declared shape
        raise ModelError(f"malformed {name} output: {exc}") from exc
    if array is None:
        raise ModelError(f"Triton answered without the {name} output")
    if array.dtype != np.uint8 or array.shape != shape:
        raise ModelError(
            f"{name} output is {array.dtype} {array.shape}, expected uint8 {shape}"
        )
    return np.asarray(array, dtype=np.uint8)


def check_output_shape(result: Any, name: str, shape: tuple[int, ...]) -> None:
    """An output left in shared memory still has its shape and type in the response."""
    output = result.get_output(name)
    if output is None:
        raise ModelError(f"Triton answered without the {name} output")
    if output.datatype != "UINT8" or tuple(output.shape) != shape:
        raise ModelError(
            f"{name} output is {output.datatype} {list(output.shape)}, expected UINT8 {shape}"
        )


def parse_outputs(result: Any, count: int, size: int) -> Segmentation:
    packed = _output(result, MASK_OUTPUT, (count, size, size // 8))
    pooled = size // PROBABILITY_STRIDE
    probability = _output(result, PROBABILITY_OUTPUT, (count, pooled, pooled))
    return Segmentation(mask=unpack_mask(packed, size), probability=probability)

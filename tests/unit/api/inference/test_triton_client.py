"""TritonSegmenter's reading of model configs and answers, without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from api.errors import InferenceTimeout, InferenceUnavailable, ModelError
from api.inference.contract import BONE_WINDOW, Window
from api.inference.triton_answers import parse_model, parse_outputs, translate_error


def _config(**changes: Any) -> dict[str, Any]:
    parameters = {"windows": "400:1800,40:400", "threshold": "0.4", "model_version": "v7",
                  "input_size": "512"}
    config = {"name": "bonemets_trt", "platform": "tensorrt_plan", "max_batch_size": 32,
              "parameters": {k: {"string_value": v} for k, v in parameters.items()}}
    return {**config, **changes}


def _metadata(datatype: str) -> dict[str, Any]:
    return {"inputs": [{"name": "HU", "datatype": datatype, "shape": ["-1", "512", "512"]}]}


def test_gpu_model_takes_float16_hu() -> None:
    info, dtype = parse_model(_config(), _metadata("FP16"))
    assert dtype is np.float16
    assert info.windows == (BONE_WINDOW, Window(40, 400))
    assert (info.threshold, info.version, info.platform) == (0.4, "v7", "tensorrt_plan")
    assert info.max_batch_size == 32


def test_cpu_model_takes_int16_hu() -> None:
    config = _config(platform="", backend="python", name="bonemets")
    info, dtype = parse_model(config, _metadata("INT16"))
    assert dtype is np.int16 and info.platform == "python"


def test_config_without_parameters_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="windows"):
        parse_model(_config(parameters={}), _metadata("INT16"))
    with pytest.raises(ModelError):
        parse_model(_config(), _metadata("FP32"))


class _Result:
    def __init__(self, outputs: dict[str, np.ndarray[Any, Any]]) -> None:
        self.outputs = outputs

    def as_numpy(self, name: str) -> np.ndarray[Any, Any] | None:
        return self.outputs.get(name)


def test_outputs_are_unpacked() -> None:
    mask = np.zeros((2, 512, 512), dtype=bool)
    mask[1, 10, 3:20] = True
    probability = np.arange(2 * 128 * 128, dtype=np.uint32).astype(np.uint8).reshape(2, 128, 128)
    result = _Result({"MASK": np.packbits(mask, axis=-1), "PROBABILITY": probability})
    segmentation = parse_outputs(result, 2, 512)
    np.testing.assert_array_equal(segmentation.mask, mask)
    np.testing.assert_array_equal(segmentation.probability, probability)


GOOD_MASK, GOOD_PROBABILITY = np.zeros((1, 512, 64), np.uint8), np.zeros((1, 128, 128), np.uint8)


@pytest.mark.parametrize(
    "outputs",
    [
        {"PROBABILITY": GOOD_PROBABILITY},  # missing
        {"MASK": GOOD_MASK, "PROBABILITY": GOOD_PROBABILITY.astype(np.float32)},  # dtype
        {"MASK": np.zeros((2, 512, 64), np.uint8), "PROBABILITY": GOOD_PROBABILITY},  # count
        {"MASK": np.zeros((0,), np.uint8), "PROBABILITY": GOOD_PROBABILITY},  # empty
    ],
)
def test_malformed_outputs_are_model_errors(outputs: dict[str, np.ndarray[Any, Any]]) -> None:
    with pytest.raises(ModelError):
        parse_outputs(_Result(outputs), 1, 512)


def test_grpc_statuses_map_to_the_error_tree() -> None:
    from tritonclient.utils import InferenceServerException

    def error(status: str) -> Exception:
        return translate_error(InferenceServerException("boom", status=status), "inference")

    assert type(error("StatusCode.UNAVAILABLE")) is InferenceUnavailable
    assert type(error("StatusCode.NOT_FOUND")) is InferenceUnavailable
    assert type(error("StatusCode.DEADLINE_EXCEEDED")) is InferenceTimeout
    assert type(error("StatusCode.INTERNAL")) is ModelError
    assert type(error("StatusCode.INVALID_ARGUMENT")) is ModelError

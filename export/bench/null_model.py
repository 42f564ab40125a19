"""``bonemets_null``: a Triton model with the bonemets tensor contract that does no work.

It answers every request at once with an all-zero MASK and PROBABILITY of the right shapes,
so a study sent through the gateway to it measures the gateway's own cost (decode, gRPC,
lesions, storage) and nothing of the network. It is a Python-backend model, like the CPU
``bonemets`` model, so the request path through Triton is the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from api.inference.contract import (
    BONE_WINDOW,
    DEFAULT_THRESHOLD,
    INPUT_NAME,
    INPUT_SIZE,
    MASK_OUTPUT,
    MAX_BATCH_SIZE,
    PROBABILITY_OUTPUT,
    PROBABILITY_STRIDE,
    format_windows,
)

NULL_MODEL_NAME = "bonemets_null"
NULL_MODEL_VERSION = "null-0"


def null_outputs(count: int, size: int = INPUT_SIZE) -> dict[str, npt.NDArray[np.uint8]]:
    """The outputs for ``count`` slices: packed MASK (N, size, size/8) and PROBABILITY, zeros."""
    pooled = size // PROBABILITY_STRIDE
    return {
        MASK_OUTPUT: np.zeros((count, size, size // 8), dtype=np.uint8),
        PROBABILITY_OUTPUT: np.zeros((count, pooled, pooled), dtype=np.uint8),
    }


def null_config(name: str = NULL_MODEL_NAME, max_batch_size: int = MAX_BATCH_SIZE) -> str:
    """``config.pbtxt`` of the null model: the bonemets contract and parameters, one instance."""
    parameters = {
        "windows": format_windows((BONE_WINDOW,)),
        "threshold": repr(DEFAULT_THRESHOLD),
        "model_version": NULL_MODEL_VERSION,
        "input_size": str(INPUT_SIZE),
        "probability_stride": str(PROBABILITY_STRIDE),
    }
    lines = "\n".join(
        f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}'
        for key, value in parameters.items()
    )
    packed, pooled = INPUT_SIZE // 8, INPUT_SIZE // PROBABILITY_STRIDE
    return f"""# Written by export/bench/null_model.py: a zero-cost stand-in for benchmarks.
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [
  {{ name: "{INPUT_NAME}" data_type: TYPE_INT16 dims: [ {INPUT_SIZE}, {INPUT_SIZE} ] }}
]
output [
  {{ name: "{MASK_OUTPUT}" data_type: TYPE_UINT8 dims: [ {INPUT_SIZE}, {packed} ] }},
  {{ name: "{PROBABILITY_OUTPUT}" data_type: TYPE_UINT8 dims: [ {pooled}, {pooled} ] }}
]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
{lines}
"""


def install_null_model(repository: Path, name: str = NULL_MODEL_NAME) -> Path:
    """Write the null model into ``repository``; returns its folder."""
    model_dir = repository / name
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    template = Path(__file__).with_name("null_triton_model.py")
    (version_dir / "model.py").write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
    (model_dir / "config.pbtxt").write_text(null_config(name), encoding="utf-8")
    return model_dir

"""The tensorrt_plan model's config.pbtxt, matched to the engine's batch profile and checked
with Triton's own schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from api.inference.contract import (
    INPUT_NAME,
    INPUT_SIZE,
    MASK_OUTPUT,
    PROBABILITY_OUTPUT,
    PROBABILITY_STRIDE,
)
from export.packaging.tensorrt_report import Profile

__all__ = ["configure_trt_model"]

_EXPECTED_TENSORS = {
    INPUT_NAME: ("TYPE_FP16", [INPUT_SIZE, INPUT_SIZE]),
    MASK_OUTPUT: ("TYPE_UINT8", [INPUT_SIZE, INPUT_SIZE // 8]),
    PROBABILITY_OUTPUT: ("TYPE_UINT8", [INPUT_SIZE // PROBABILITY_STRIDE] * 2),
}


def _config_problems(config: Any, profile: Profile) -> list[str]:
    """How a parsed ModelConfig departs from what the engine of ``profile`` serves."""
    from tritonclient.grpc import model_config_pb2

    problems = []
    if config.platform != "tensorrt_plan":
        problems.append(f"platform is {config.platform!r}, not 'tensorrt_plan'")
    if config.max_batch_size != profile.maximum:
        problems.append(f"max_batch_size {config.max_batch_size} != profile max {profile.maximum}")
    declared = {
        tensor.name: (model_config_pb2.DataType.Name(tensor.data_type), list(tensor.dims))
        for tensor in [*config.input, *config.output]
    }
    for name, expected in _EXPECTED_TENSORS.items():
        if declared.get(name) != expected:
            problems.append(f"{name} is {declared.get(name)}, expected {expected}")
    sizes = list(config.dynamic_batching.preferred_batch_size)
    if any(size > profile.maximum for size in sizes):
        problems.append(f"preferred batch sizes {sizes} exceed {profile.maximum}")
    return problems


def _with_batching(text: str, profile: Profile) -> str:
    text, count = re.subn(
        r"^max_batch_size:\s*\d+", f"max_batch_size: {profile.maximum}", text, flags=re.M
    )
    if count != 1:
        raise ValueError("config.pbtxt has no single top-level max_batch_size line")

    def fitting(match: re.Match[str]) -> str:
        sizes = [int(s) for s in re.findall(r"\d+", match.group(1))]
        kept = [s for s in sizes if s <= profile.maximum] or [profile.maximum]
        return f"preferred_batch_size: [ {', '.join(map(str, kept))} ]"

    return re.sub(r"preferred_batch_size:\s*\[([^\]]*)\]", fitting, text)


def configure_trt_model(model_dir: Path, profile: Profile, *, write: bool = True) -> Path:
    """Match ``model_dir/config.pbtxt`` to the engine: max_batch_size, preferred sizes.

    Keeps the rest of the file (tensor names, parameters, comments) as written by
    :func:`export.packaging.repository.install_model`, then checks it with Triton's own schema:
    tensorrt_plan, ``HU`` FP16 [512, 512], ``MASK`` UINT8 [512, 64], ``PROBABILITY``
    UINT8 [128, 128]. Raises ValueError, leaving the file alone, when it does not fit;
    ``write=False`` only checks.
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    path = model_dir / "config.pbtxt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run 'bonemets export onnx' first")
    text = _with_batching(path.read_text(encoding="utf-8"), profile)
    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    problems = _config_problems(config, profile)
    if problems:
        raise ValueError(f"{path} does not fit the engine: " + "; ".join(problems))
    if write:
        path.write_text(text, encoding="utf-8")
    return path

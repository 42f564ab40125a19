"""Triton Python-backend model of bonemets: a thin adapter around :class:`OnnxSegmenter`.

The one source of the served model code: the ``<repository>/<name>/<version>/model.py``
that ``export.packaging.repository.install_model`` writes only imports this class. The
local Triton runs the stub with the bonemets installation on its PYTHONPATH, so it runs
the very code the gateway uses in process. Every request of a dynamic batch is
concatenated into one ONNX Runtime run, then split again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from api.inference.bone_gate import BoneGate
from api.inference.contract import (
    INPUT_NAME,
    MASK_OUTPUT,
    PROBABILITY_OUTPUT,
    format_windows,
    parse_windows,
)
from api.inference.onnx_local import OnnxSegmenter


class TritonPythonModel:
    """The model object the Python backend instantiates once per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open the ONNX network next to this file with the windows and threshold of the config."""
        config = json.loads(args["model_config"])
        parameters = {
            key: value["string_value"] for key, value in config.get("parameters", {}).items()
        }
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self._segmenter = OnnxSegmenter(
            version_dir / "model.onnx",
            windows=parse_windows(parameters["windows"]),
            threshold=float(parameters["threshold"]),
            name=args["model_name"],
            version=parameters.get("model_version", ""),
            intra_op_threads=int(parameters.get("intra_op_threads", "0")),
            max_batch_size=int(config["max_batch_size"]),
            bone_gate=BoneGate.parse(parameters.get("bone_gate", "")),
        )
        pb_utils.Logger.log_info(
            f"bonemets model {parameters.get('model_version', '?')} ready: windows "
            f"{format_windows(parse_windows(parameters['windows']))}, "
            f"threshold {parameters['threshold']}, bone gate {parameters.get('bone_gate', 'off')}"
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer every request of a dynamic batch from a single network run."""
        batches = [
            pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy()
            for request in requests
        ]
        try:
            masks, probabilities = self._segmenter.run_packed(np.concatenate(batches))
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client
            error = pb_utils.TritonError(f"segmentation failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for batch in batches:
            stop = start + len(batch)
            mask = np.ascontiguousarray(masks[start:stop])
            probability = np.ascontiguousarray(probabilities[start:stop])
            outputs = [
                pb_utils.Tensor(MASK_OUTPUT, mask),
                pb_utils.Tensor(PROBABILITY_OUTPUT, probability),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            start = stop
        return responses

    def finalize(self) -> None:
        """Drop the ONNX Runtime session before the stub exits."""
        self._segmenter = None  # type: ignore[assignment]

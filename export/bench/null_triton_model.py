"""Triton Python-backend body of ``bonemets_null``: zeros of the contract's shapes, at once.

:func:`export.bench.null_model.install_null_model` copies this file to ``<repository>/
bonemets_null/1/model.py``; the local Triton puts this project on the stub's PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import triton_python_backend_utils as pb_utils

from api.inference.contract import INPUT_NAME
from export.bench.null_model import null_outputs


class TritonPythonModel:
    """Answers each request with all-zero outputs for as many slices as it sent."""

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request; the input is only looked at for its batch size."""
        responses = []
        for request in requests:
            count = pb_utils.get_input_tensor_by_name(request, INPUT_NAME).as_numpy().shape[0]
            outputs = [pb_utils.Tensor(name, array) for name, array in null_outputs(count).items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

"""A network rebuilt from its exported ONNX computes what the ONNX computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from api.inference.contract import ONNX_INPUT  # noqa: E402
from export.model import ModelConfig, build_model  # noqa: E402
from export.model.from_onnx import model_from_onnx  # noqa: E402
from export.packaging.onnx_export import export_network_onnx, run_onnx  # noqa: E402


def test_rebuilt_network_matches_the_onnx_it_came_from(tmp_path: Path) -> None:
    config = ModelConfig(depth=18, width=0.125)
    torch.manual_seed(3)
    model = build_model(config)
    with torch.no_grad():  # non-trivial norms, so folding them back in is tested
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.normal_(0.0, 0.1)
    path = export_network_onnx(model, tmp_path / "model.onnx", in_channels=1)
    rebuilt = model_from_onnx(path, config)
    images = np.random.default_rng(0).random((1, 1, 512, 512), dtype=np.float32)
    (expected,) = run_onnx(path, {ONNX_INPUT: images})
    with torch.no_grad():
        actual = rebuilt(torch.from_numpy(images)).numpy()
    assert np.abs(expected).max() > 1e-3
    assert np.abs(actual - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    with pytest.raises(ValueError, match="convolutions"):
        model_from_onnx(path, ModelConfig(depth=34, width=0.125))

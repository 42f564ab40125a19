"""The bone gate in the serving graph: PyTorch, ONNX Runtime and numpy give the same bits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from api.inference.bone_gate import BoneGate, bone_region, gate_packed_mask  # noqa: E402
from api.inference.contract import INPUT_NAME, Window  # noqa: E402
from api.inference.processing import postprocess, window_channels  # noqa: E402
from export.model import serving  # noqa: E402
from export.packaging.onnx_export import (  # noqa: E402
    ct_like_slices,
    export_serving_onnx,
    run_onnx,
)
from tests.unit.api.inference.test_bone_gate import vertebra_and_soft_tissue  # noqa: E402

GATE = BoneGate(200, 24, 3)
BLOB_WINDOW = Window(level=100.0, width=200.0)  # 100 HU sits at 0.5


class _Blobs(nn.Module):
    """Logit 10 at 100 HU, falling off fast on either side: a detector of 100 HU blobs."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return 10.0 - 400.0 * torch.abs(image - 0.5)


def _numpy_path(hounsfield: np.ndarray, gate: BoneGate | None) -> np.ndarray:
    image = window_channels(hounsfield.astype(np.int16), (BLOB_WINDOW,))
    logits = _Blobs()(torch.from_numpy(image)).numpy()
    packed, _ = postprocess(logits, 0.5)
    return gate_packed_mask(packed, hounsfield, gate)


@pytest.mark.parametrize("input_dtype", ["float16", "int16"])
def test_serving_graph_reports_the_blob_in_bone_only(tmp_path: Path, input_dtype: str) -> None:
    hounsfield, in_bone, _ = vertebra_and_soft_tissue()
    hounsfield = hounsfield.astype(input_dtype)
    path = export_serving_onnx(
        _Blobs(),
        tmp_path / "gated.onnx",
        windows=(BLOB_WINDOW,),
        threshold=0.5,
        input_dtype=input_dtype,  # type: ignore[arg-type]
        bone_gate=GATE,
    )
    mask, _ = run_onnx(path, {INPUT_NAME: hounsfield})
    assert np.array_equal(np.unpackbits(mask, axis=-1).astype(bool)[0], in_bone)
    graph = serving.ServingGraph(_Blobs(), (BLOB_WINDOW,), 0.5, bone_gate=GATE)
    with torch.no_grad():
        torch_mask, _ = graph(torch.from_numpy(hounsfield))
    assert np.array_equal(torch_mask.numpy(), mask)
    assert np.array_equal(_numpy_path(hounsfield, GATE), mask)
    ungated = _numpy_path(hounsfield, None)
    assert np.unpackbits(ungated).sum() > np.unpackbits(mask).sum()  # the gate removed pixels


class _Region(nn.Module):
    def forward(self, hounsfield: torch.Tensor) -> torch.Tensor:
        hu = hounsfield.to(torch.float32).unsqueeze(1)
        return serving.bone_region(hu, GATE).squeeze(1).to(torch.uint8)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TorchScript exporter
def test_region_parity_pytorch_onnx_numpy_on_ct_like_slices(tmp_path: Path) -> None:
    hounsfield = ct_like_slices(3, seed=11)
    hounsfield[0, :, :40] = 1200  # bone against the image border: padding must agree
    path = tmp_path / "region.onnx"
    example = torch.from_numpy(hounsfield[:2])
    torch.onnx.export(
        _Region(),
        (example,),
        str(path),
        dynamo=False,
        input_names=["HU"],
        output_names=["REGION"],
        dynamic_axes={"HU": {0: "n"}, "REGION": {0: "n"}},
        opset_version=17,
    )
    (onnx_region,) = run_onnx(path, {"HU": hounsfield})
    with torch.no_grad():
        torch_region = _Region()(torch.from_numpy(hounsfield)).numpy()
    numpy_region = bone_region(hounsfield, GATE)
    assert 0.01 < numpy_region.mean() < 0.5  # neither empty nor everything
    assert np.count_nonzero(onnx_region.astype(bool) != numpy_region) == 0
    assert np.count_nonzero(torch_region.astype(bool) != numpy_region) == 0

"""ONNX export: PyTorch vs ONNX Runtime parity; the serving graph vs the CPU path's numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402

from api.cli import main as bonemets  # noqa: E402
from api.inference.contract import (  # noqa: E402
    BONE_WINDOW,
    INPUT_NAME,
    MASK_OUTPUT,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PROBABILITY_OUTPUT,
    Window,
)
from api.inference.processing import postprocess, sigmoid, window_channels  # noqa: E402
from export.model import ModelConfig, build_model  # noqa: E402
from export.model.resnet import BasicBlock  # noqa: E402
from export.packaging.onnx_export import (  # noqa: E402
    ct_like_slices,
    export_network_onnx,
    export_serving_onnx,
    network_parity,
    run_onnx,
    serving_parity,
)

SOFT_TISSUE = Window(level=40.0, width=400.0)


def _slices(count: int, seed: int) -> np.ndarray:
    """CT-like HU slices (air, body, bone ring, a lytic and a blastic spot)."""
    return ct_like_slices(count, seed=seed)


def _realistic_model(norm: str) -> nn.Module:
    """A small random DeepLabV3+ with live residual branches and logits within +-12."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=18, width=0.125, norm=norm))  # type: ignore[arg-type]
    images = torch.from_numpy(
        np.concatenate(
            [
                window_channels(_slices(2, seed=7), (BONE_WINDOW,)),
                np.random.default_rng(0).random((2, 1, 512, 512), dtype=np.float32),
            ]
        )
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BasicBlock):
                module.last_norm.weight.fill_(0.5)  # zero-initialised at build: wake them
            if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                module.bias.normal_(0.0, 0.1)
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # a cumulative average: one pass sets the statistics
        model.train()
        model(images)
        model.eval()
        scale = 12.0 / model(images).abs().max()
        model.decoder.classifier.weight.mul_(scale)
        model.decoder.classifier.bias.mul_(scale)
    return model


@pytest.fixture(scope="module", params=["batch", "group"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    model = _realistic_model(request.param)
    folder = tmp_path_factory.mktemp(f"onnx-{request.param}")
    network = export_network_onnx(model, folder / "model.onnx", in_channels=1)
    return model, network, folder


def _io(path: Path) -> dict[str, tuple[int, list[object]]]:
    graph = onnx.load(str(path)).graph
    return {
        value.name: (
            value.type.tensor_type.elem_type,
            [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim],
        )
        for value in [*graph.input, *graph.output]
    }


def test_network_graph_has_contract_names_and_dynamic_batch(exported: tuple) -> None:
    _, network, _ = exported
    assert _io(network) == {
        ONNX_INPUT: (onnx.TensorProto.FLOAT, ["batch", 1, 512, 512]),
        ONNX_OUTPUT: (onnx.TensorProto.FLOAT, ["batch", 1, 512, 512]),
    }
    assert all(op.version >= 17 for op in onnx.load(str(network)).opset_import if op.domain == "")


@pytest.mark.parametrize("batch", [1, 3])
def test_network_parity_on_ct_like_slices(exported: tuple, batch: int) -> None:
    model, network, _ = exported
    images = window_channels(_slices(batch, seed=11), (BONE_WINDOW,))
    parity = network_parity(model, network, images)
    assert parity.max_logit > 1.0  # the check means something only if the logits vary
    assert parity.max_difference <= 1e-4


@pytest.mark.parametrize("batch", [1, 3])
def test_network_parity_on_random_images(exported: tuple, batch: int) -> None:
    model, network, _ = exported
    images = np.random.default_rng(batch).random((batch, 1, 512, 512), dtype=np.float32)
    assert network_parity(model, network, images).max_difference <= 1e-4


def test_export_restores_training_mode(tmp_path: Path) -> None:
    model = build_model(ModelConfig(depth=18, width=0.125)).train()
    export_network_onnx(model, tmp_path / "model.onnx", in_channels=1)
    assert model.training


@pytest.mark.parametrize("input_dtype", ["float16", "int16"])
def test_serving_graph_matches_numpy_reference(exported: tuple, input_dtype: str) -> None:
    model, network, folder = exported
    serving = export_serving_onnx(
        model,
        folder / f"serving-{input_dtype}.onnx",
        windows=(BONE_WINDOW,),
        threshold=0.3,
        input_dtype=input_dtype,  # type: ignore[arg-type]
    )
    onnx_type = {"float16": onnx.TensorProto.FLOAT16, "int16": onnx.TensorProto.INT16}[input_dtype]
    assert _io(serving) == {
        INPUT_NAME: (onnx_type, ["batch", 512, 512]),
        MASK_OUTPUT: (onnx.TensorProto.UINT8, ["batch", 512, 64]),
        PROBABILITY_OUTPUT: (onnx.TensorProto.UINT8, ["batch", 128, 128]),
    }
    hounsfield = _slices(3, seed=5).astype(input_dtype)
    (logits,) = run_onnx(network, {ONNX_INPUT: window_channels(hounsfield, (BONE_WINDOW,))})
    expected_mask, expected_probability = postprocess(logits, 0.3)
    mask, probability = run_onnx(serving, {INPUT_NAME: hounsfield})
    assert 0 < np.unpackbits(mask).mean() < 1  # the threshold cuts through: bits get compared
    assert np.array_equal(mask, expected_mask)
    # Byte-equal, except where the float32 sigmoid (ONNX Runtime) and the float64 one (numpy)
    # straddle an integer of p x 255 + 0.5; those cells may differ by one.
    differs = probability != expected_probability
    assert np.abs(probability.astype(int) - expected_probability).max() <= 1
    assert np.all(_near_rounding_boundary(logits)[differs])
    assert differs.sum() <= 3
    parity = serving_parity(network, serving, hounsfield, windows=(BONE_WINDOW,), threshold=0.3)
    assert parity.mask_bits_differing == 0
    assert parity.probability_max_difference == int(differs.any())


def _near_rounding_boundary(logits: np.ndarray) -> np.ndarray:
    n, _, h, w = logits.shape
    pooled = logits[:, 0].reshape(n, h // 4, 4, w // 4, 4).max(axis=(2, 4))
    scaled = sigmoid(pooled) * 255 + 0.5
    return np.abs(scaled - np.round(scaled)) < 1e-3


class _Step(nn.Module):
    """Logit +-20 depending on whether channel ``channel`` of the image is above 1/2."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.channel = channel

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return 40.0 * (image[:, self.channel : self.channel + 1] - 0.5)


def test_serving_graph_windows_per_channel_and_packs_msb_first(tmp_path: Path) -> None:
    # The step reads the soft-tissue window (second): -100 vs 300 HU is 0.15 vs 1 there, while
    # in the bone window both sit below 1/2, so a mix-up of channels empties the mask.
    windows = (BONE_WINDOW, SOFT_TISSUE)
    serving = export_serving_onnx(_Step(1), tmp_path / "step.onnx", windows=windows, threshold=0.5)
    hounsfield = np.full((2, 512, 512), -100, dtype=np.float16)
    hounsfield[0, 10, 0] = 300  # first pixel of a byte: the most significant bit
    hounsfield[0, 10, 15] = 300  # last pixel of the second byte: its least significant bit
    hounsfield[1, 200:204, 300:302] = 500
    hounsfield[1, 0, 511] = 40  # window level: logit exactly 0 = logit(0.5), a tie counts
    mask, probability = run_onnx(serving, {INPUT_NAME: hounsfield})
    expected = np.zeros((2, 512, 512), dtype=bool)
    expected[0, 10, [0, 15]] = True
    expected[1, 200:204, 300:302] = True
    expected[1, 0, 511] = True
    assert np.array_equal(mask, np.packbits(expected, axis=-1))
    assert mask[0, 10, 0] == 0b1000_0000 and mask[0, 10, 1] == 0b0000_0001
    # sigmoid(+-20) x 255 rounds to 255 and 0; any pixel of a 4x4 block lifts the block.
    assert probability[0, 2, 0] == 255 and probability[0, 2, 3] == 255
    assert probability[1, 50, 75] == 255 and probability[1, 0, 127] == 128
    assert probability.sum() == 255 * 3 + 128


def test_export_rejects_old_opset_and_unknown_dtype(tmp_path: Path) -> None:
    model = build_model(ModelConfig(depth=18, width=0.125))
    with pytest.raises(ValueError, match="opset"):
        export_network_onnx(model, tmp_path / "m.onnx", in_channels=1, opset=13)
    with pytest.raises(ValueError, match="input_dtype"):
        export_serving_onnx(
            model,
            tmp_path / "s.onnx",
            windows=(BONE_WINDOW,),
            threshold=0.5,
            input_dtype="uint8",  # type: ignore[arg-type]
        )


def test_cli_init_then_export_installs_into_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("export.packaging.repository")
    checkpoint = tmp_path / "random.pt"
    assert (
        bonemets(["export", "init", "--width", "0.125", "--seed", "3", "--out", str(checkpoint)])
        == 0
    )
    repository = tmp_path / "repository"
    assert (
        bonemets(
            ["export", "onnx", str(checkpoint), "--repository", str(repository), "--version", "2"]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "network parity, batch 3" in output and "0 mask bits differ" in output
    network = repository / "bonemets" / "2" / "model.onnx"
    assert _io(network)[ONNX_INPUT] == (onnx.TensorProto.FLOAT, ["batch", 1, 512, 512])
    config = (repository / "bonemets" / "config.pbtxt").read_text()
    assert '"400:1800"' in config and "random-r18-w0.125-s3" in config


def test_export_refuses_a_model_with_slice_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from export.model.checkpoint import save_checkpoint

    config = ModelConfig(depth=18, width=0.125, in_channels=3, context=1)
    checkpoint = save_checkpoint(
        tmp_path / "context.pt", build_model(config), config, windows=(BONE_WINDOW,),
        threshold=0.5, version="context-test",
    )
    repository = tmp_path / "repository"
    assert bonemets(["export", "onnx", str(checkpoint), "--repository", str(repository)]) == 2
    assert "serving a context model is not supported yet" in caplog.text
    assert not repository.exists()

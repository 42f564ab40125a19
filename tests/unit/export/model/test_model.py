"""The PyTorch DeepLabV3+: configuration, architecture, training-mode sanity, checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from api.inference.contract import BONE_WINDOW, Window  # noqa: E402
from export.model import ModelConfig, build_model, parameter_count  # noqa: E402
from export.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from export.model.layers import GroupNorm, group_count  # noqa: E402
from export.model.resnet import BasicBlock, Bottleneck  # noqa: E402


def _model(**overrides: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(**{"depth": 18, "width": 0.125, **overrides}))  # type: ignore[arg-type]


def test_config_round_trips_through_json() -> None:
    config = ModelConfig(
        depth=50, width=0.5, in_channels=2, aspp_rates=(3, 6, 9), norm="group", decoder_channels=64
    )
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.aspp_rates == (3, 6, 9)


@pytest.mark.parametrize(
    "bad",
    [
        {"depth": 101}, {"width": 0.0}, {"in_channels": 0}, {"output_stride": 32},
        {"norm": "layer"}, {"decoder_channels": 4},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**bad)  # type: ignore[arg-type]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"depth": 18, "dropout": 0.5})


def test_width_scales_channels_and_keeps_48_low_level_at_width_one() -> None:
    quarter = build_model(ModelConfig(depth=18, width=0.25))
    assert quarter.encoder.stem[0].out_channels == 16
    assert quarter.aspp.pooling.conv.out_channels == 64
    assert quarter.decoder.low_project[0].out_channels == 12
    assert ModelConfig(width=1.0).low_level_projection == 48


def test_decoder_channels_set_apart_from_the_encoder_width() -> None:
    half = build_model(ModelConfig(depth=18, width=0.5, decoder_channels=64))
    assert half.encoder.stem[0].out_channels == 32  # the encoder at width 0.5
    assert half.encoder.out_channels == 256
    assert half.aspp.pooling.conv.out_channels == 64  # not 128
    assert all(branch[0].out_channels == 64 for branch in half.aspp.branches)
    assert half.decoder.fuse[1][0].out_channels == 64
    assert half.decoder.classifier.in_channels == 64
    logits = half.eval()(torch.zeros(1, 1, 64, 64))
    assert logits.shape == (1, 1, 64, 64)
    assert parameter_count(half) < parameter_count(build_model(ModelConfig(width=0.5)))


@pytest.mark.parametrize(
    ("depth", "block", "counts"),
    [
        (18, BasicBlock, (2, 2, 2, 2)),
        (34, BasicBlock, (3, 4, 6, 3)),
        (50, Bottleneck, (3, 4, 6, 3)),
    ],
)
def test_depth_selects_block_type_and_counts(
    depth: int, block: type, counts: tuple[int, ...]
) -> None:
    encoder = build_model(ModelConfig(depth=depth, width=0.125)).encoder
    stages = (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4)
    assert tuple(len(stage) for stage in stages) == counts
    assert all(isinstance(b, block) for stage in stages for b in stage)


def test_output_stride_16_dilates_the_last_stage() -> None:
    model = _model().eval()
    with torch.no_grad():
        low, high = model.encoder(torch.zeros(1, 1, 128, 128))
    assert low.shape[-2:] == (32, 32)  # 1/4
    assert high.shape[-2:] == (8, 8)  # 1/16
    assert model.encoder.layer4[0].conv1.dilation == (2, 2)
    assert model.encoder.layer4[0].conv1.stride == (1, 1)


@pytest.mark.parametrize("norm", ["batch", "group"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_gives_one_logit_channel_at_input_size(norm: str, in_channels: int) -> None:
    model = _model(norm=norm, in_channels=in_channels).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, in_channels, 96, 64))
    assert logits.shape == (2, 1, 96, 64)
    assert torch.isfinite(logits).all()


def test_rejects_sizes_not_multiple_of_output_stride() -> None:
    with pytest.raises(ValueError, match="output stride 16"):
        _model()(torch.zeros(1, 1, 100, 64))


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_trains_at_batch_one(norm: str) -> None:
    # BatchNorm on the 1x1 image-pooling map at batch 1 would raise here.
    model = _model(norm=norm).train()
    logits = model(torch.rand(1, 1, 64, 64))
    logits.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.aspp.pooling.conv.weight.grad.abs().sum() > 0


def test_head_starts_at_prior_probability() -> None:
    model = _model(head_prior=0.01)
    assert model.decoder.classifier.bias.item() == pytest.approx(math.log(0.01 / 0.99))


def test_parameter_count_of_deployed_size_is_pinned() -> None:
    # A change here changes every checkpoint's layout: bump CHECKPOINT_FORMAT_VERSION too.
    count = parameter_count(build_model(ModelConfig(depth=18, width=0.25)))
    assert count == 1_040_457
    assert count * 4 < 25 * 2**20  # the float32 ONNX stays well under 25 MB


def test_group_norm_export_path_matches_group_norm() -> None:
    norm = GroupNorm(group_count(24), 24)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.rand(2, 24, 32, 32) * 5 + 3
    expected = norm(x)
    with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
        staged = norm(x)
    assert torch.allclose(staged, expected, atol=1e-5)
    assert group_count(24) == 6 and group_count(16) == 4 and group_count(256) == 32


def _save(path: Path, model: nn.Module, config: ModelConfig) -> Path:
    return save_checkpoint(
        path,
        model,
        config,
        windows=(BONE_WINDOW,),
        threshold=0.4,
        version="test-1",
        train_config={"lr": 1e-3, "data": Path("/data/phantoms")},
        metrics={"dice": 0.75},
        epoch=3,
        step=120,
    )


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = ModelConfig(depth=18, width=0.125)
    model = _model()
    model.train()
    model(torch.rand(2, 1, 64, 64))  # moves BatchNorm running statistics off their defaults
    model.eval()
    path = _save(tmp_path / "sub" / "model.pt", model, config)
    loaded = load_checkpoint(path)
    assert loaded.config == config
    assert loaded.windows == (Window(400.0, 1800.0),)
    assert (loaded.threshold, loaded.version, loaded.epoch, loaded.step) == (0.4, "test-1", 3, 120)
    assert loaded.train_config == {"lr": 1e-3, "data": "/data/phantoms"}
    assert loaded.metrics == {"dice": 0.75}
    assert not loaded.model.training
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_checkpoint_refuses_window_count_mismatch(tmp_path: Path) -> None:
    config = ModelConfig(depth=18, width=0.125, in_channels=2)
    with pytest.raises(ValueError, match="1 window"):
        _save(tmp_path / "model.pt", _model(in_channels=2), config)


def test_load_refuses_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a bonemets checkpoint"):
        load_checkpoint(path)


def test_checkpoint_keeps_optimizer_state_loadable_without_pickle(tmp_path: Path) -> None:
    config = ModelConfig(depth=18, width=0.125)
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 64, 64)).mean().backward()
    optimizer.step()
    path = save_checkpoint(
        tmp_path / "model.pt",
        model,
        config,
        windows=(BONE_WINDOW,),
        threshold=0.5,
        version="v",
        optimizer_state=optimizer.state_dict(),
        step=1,
    )
    loaded = load_checkpoint(path)  # weights_only=True inside
    assert loaded.optimizer_state is not None
    resumed = torch.optim.AdamW(loaded.model.parameters(), lr=1e-3)
    resumed.load_state_dict(loaded.optimizer_state)
    first = next(iter(optimizer.state.values()))["exp_avg"]
    assert torch.equal(next(iter(resumed.state.values()))["exp_avg"], first)

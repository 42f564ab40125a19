"""``bonemets export tensorrt``: profile, Dice, reports, Triton config, layer pins, pipeline.

The plain parts run everywhere. The pipeline runs here with ONNX Runtime standing in for the
engine (the serving graph on the CPU), so orchestration, parity, install and the files written
are checked for real. Building and running a TensorRT engine is marked ``gpu`` and skips where
TensorRT or a CUDA GPU is absent.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from api.cli import main as bonemets
from api.inference.contract import BONE_WINDOW, INPUT_NAME
from export.packaging import tensorrt_engine, tensorrt_export
from export.packaging.repository import install_model
from export.packaging.tensorrt_config import configure_trt_model
from export.packaging.tensorrt_engine import TensorrtUnavailable, trtexec_command
from export.packaging.tensorrt_report import (
    SECTION_BEGIN,
    SECTION_END,
    Parity,
    Profile,
    TensorrtReport,
    Throughput,
    compare_outputs,
    mask_dice,
    report_markdown,
    write_report_section,
)

GPU_REASON = "needs an NVIDIA GPU and TensorRT (not available here)"


def _parse(path: Path) -> Any:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


# --- Dice and parity ----------------------------------------------------------------------


def test_mask_dice_on_hand_made_masks() -> None:
    first = np.zeros((2, 4, 4), dtype=np.bool_)
    second = np.zeros((2, 4, 4), dtype=np.bool_)
    first[0, 0, :4] = True  # 4 pixels
    second[0, 0, :2] = True  # 2 of them ...
    second[1, 3, 3] = True  # ... and one elsewhere, on another slice
    assert mask_dice(first, second) == pytest.approx(2 * 2 / (4 + 3))
    assert mask_dice(first, first) == 1.0
    assert mask_dice(first, np.zeros_like(first)) == 0.0
    assert mask_dice(np.zeros_like(first), np.zeros_like(first)) is None
    with pytest.raises(ValueError, match="shapes differ"):
        mask_dice(first, second[:1])


def _outputs(
    mask: npt.NDArray[np.bool_], probability: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    return np.packbits(mask, axis=-1), probability


def test_compare_outputs_unpacks_masks_and_measures_probability_levels() -> None:
    reference_mask = np.zeros((2, 512, 512), dtype=np.bool_)
    reference_mask[0, 100:110, 200:210] = True  # 100 pixels
    engine_mask = reference_mask.copy()
    engine_mask[0, 100, 200] = False  # one pixel lost: Dice 2*99/(99+100)
    reference_probability = np.full((2, 128, 128), 10, dtype=np.uint8)
    engine_probability = reference_probability.copy()
    engine_probability[1, :64] = 11  # a quarter of one slice, one level up
    engine_probability[0, 0, 0] = 7
    parity = compare_outputs(
        _outputs(engine_mask, engine_probability), _outputs(reference_mask, reference_probability)
    )
    assert parity.slices == 2
    assert parity.dice == pytest.approx(198 / 199)
    assert (parity.engine_pixels, parity.reference_pixels) == (99, 100)
    assert parity.probability_max_difference == 3
    assert parity.probability_mean_difference == pytest.approx((64 * 128 + 3) / (2 * 128 * 128))
    assert parity.ok


def test_parity_fails_on_low_dice_and_on_shifted_probabilities() -> None:
    def parity(dice: float | None, mean_difference: float) -> Parity:
        return Parity(1, dice, 1, 1, mean_difference, 0)

    assert not parity(0.98, 0.0).ok
    assert parity(0.99, 1.0).ok
    assert not parity(None, 1.5).ok


def test_both_masks_empty_gives_undefined_dice_and_still_compares_probabilities() -> None:
    empty = np.zeros((1, 512, 512), dtype=np.bool_)
    probability = np.full((1, 128, 128), 40, dtype=np.uint8)
    shifted = probability + np.uint8(2)
    parity = compare_outputs(_outputs(empty, shifted), _outputs(empty, probability))
    assert parity.dice is None
    assert (parity.probability_mean_difference, parity.probability_max_difference) == (2.0, 2)
    assert not parity.ok


# --- profile, trtexec -----------------------------------------------------------------------


def test_profile_shapes_and_validation() -> None:
    profile = Profile(1, 16, 32)
    assert profile.shapes() == ((1, 512, 512), (16, 512, 512), (32, 512, 512))
    assert [profile.covers(n) for n in (0, 1, 32, 33)] == [False, True, True, False]
    for bad in ((0, 1, 2), (1, 8, 4), (4, 2, 8)):
        with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
            Profile(*bad)


def test_trtexec_command_matches_the_profile() -> None:
    command = trtexec_command(
        "/usr/bin/trtexec", Path("s.onnx"), Path("m.plan"), Profile(1, 8, 32), workspace_gb=4
    )
    assert command == [
        "/usr/bin/trtexec",
        "--onnx=s.onnx",
        "--fp16",
        "--minShapes=HU:1x512x512",
        "--optShapes=HU:8x512x512",
        "--maxShapes=HU:32x512x512",
        "--memPoolSize=workspace:4096",
        "--saveEngine=m.plan",
        "--skipInference",
    ]


def test_tensorrt_11_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(__version__="11.0.0", BuilderFlag=types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    assert tensorrt_engine.tensorrt_version() == "11.0.0"
    with pytest.raises(TensorrtUnavailable, match="no FP16 builder flag"):
        tensorrt_engine.build_engine(Path("x.onnx"), Profile(), workspace_gb=1)


# --- which layers are pinned to FP32 --------------------------------------------------------


class _Tensor:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


class _Layer:
    def __init__(self, name: str, kind: str, inputs: list[str], outputs: list[str]) -> None:
        self.name, self.type = name, kind
        self._inputs = [_Tensor(d) for d in inputs]
        self._outputs = [_Tensor(d) for d in outputs]
        self.precision: str | None = None
        self.output_types: dict[int, str] = {}

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, index: int) -> _Tensor:
        return self._inputs[index]

    def get_output(self, index: int) -> _Tensor:
        return self._outputs[index]

    def set_output_type(self, index: int, dtype: str) -> None:
        self.output_types[index] = dtype


def test_only_the_serving_graphs_own_float_layers_are_pinned_to_fp32() -> None:
    kinds = ("ELEMENTWISE", "UNARY", "ACTIVATION", "POOLING", "REDUCE", "CAST", "CONSTANT")
    trt = types.SimpleNamespace(
        LayerType=types.SimpleNamespace(**{k: k for k in kinds}),
        DataType=types.SimpleNamespace(FLOAT="f32", HALF="f16"),
    )
    layers = [
        _Layer("/Sub", "ELEMENTWISE", ["f32", "f32"], ["f32"]),
        _Layer("/network/encoder/Add", "ELEMENTWISE", ["f32", "f32"], ["f32"]),
        _Layer("/GreaterOrEqual", "ELEMENTWISE", ["f16", "f32"], ["bool"]),
        _Layer("/GreaterOrEqual_or", "ELEMENTWISE", ["bool", "bool"], ["bool"]),
        _Layer("/MaxPool", "POOLING", ["f32"], ["f32"]),
        _Layer("/Cast_2", "CAST", ["f32"], ["uint8"]),
        _Layer("Identity_12", "CONSTANT", [], ["f32"]),
    ]
    network = types.SimpleNamespace(num_layers=len(layers), get_layer=layers.__getitem__)
    assert tensorrt_engine._pin_serving_layers(trt, network) == 3
    pinned = {layer.name: (layer.precision, layer.output_types) for layer in layers}
    assert pinned == {
        "/Sub": ("f32", {0: "f32"}),
        "/network/encoder/Add": (None, {}),
        "/GreaterOrEqual": ("f32", {}),  # a bool output keeps its type
        "/GreaterOrEqual_or": (None, {}),
        "/MaxPool": ("f32", {0: "f32"}),
        "/Cast_2": (None, {}),
        "Identity_12": (None, {}),
    }


# --- reports ----------------------------------------------------------------------------------


def _report() -> TensorrtReport:
    return TensorrtReport(
        date="2026-11-27T10:00:00+00:00",
        gpu="NVIDIA H100 80GB HBM3",
        tensorrt="10.5.0",
        builder="python",
        onnx="repo/bonemets_onnx_gpu/1/model.onnx",
        plan="repo/bonemets_trt/1/model.plan",
        profile=Profile(1, 16, 32),
        workspace_gb=4.0,
        parity_seeds=(100000, 100001, 100002),
        parity=Parity(32, 0.995, 990, 1000, 0.25, 1),
        throughput=[Throughput(1, 50, 0.5), Throughput(8, 50, 1.0), Throughput(32, 50, 2.0)],
        installed=True,
    )


def test_report_markdown_table() -> None:
    text = report_markdown(_report())
    assert "GPU: NVIDIA H100 80GB HBM3; TensorRT 10.5.0 (python builder); FP16;" in text
    assert "profile HU min 1x512x512, opt 16x512x512, max 32x512x512." in text
    assert (
        "on 32 held-out slices (phantom seeds 100000-100002): mask Dice 0.9950 (engine 990 px, "
        "ONNX Runtime 1000 px; pass >= 0.99); PROBABILITY mean |difference| 0.250 levels, max 1"
        " -> pass." in text
    )
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows == [
        "| Batch | Slices/s | ms per batch | Iterations |",
        "| 1 | 100.0 | 10.000 | 50 |",
        "| 8 | 400.0 | 20.000 | 50 |",
        "| 32 | 800.0 | 40.000 | 50 |",
    ]


def test_report_without_parity_or_dice() -> None:
    report = _report()
    report.parity = Parity(4, None, 0, 0, 0.0, 0)
    assert "mask Dice undefined (both masks empty)" in report_markdown(report)
    report.parity, report.throughput = None, []
    text = report_markdown(report)
    assert "Parity with ONNX Runtime: not checked." in text
    assert "| Batch |" not in text


def test_report_json(tmp_path: Path) -> None:
    _report().write_json(tmp_path / "out" / "tensorrt.json")
    data = json.loads((tmp_path / "out" / "tensorrt.json").read_text())
    assert data["profile"] == {
        "minimum": 1, "optimum": 16, "maximum": 32,
        "shapes": [[1, 512, 512], [16, 512, 512], [32, 512, 512]],
    }
    assert data["parity"]["dice"] == 0.995 and data["parity"]["ok"] is True
    assert data["parity_seeds"] == [100000, 100001, 100002]
    rows = [(t["batch"], t["slices_per_second"], t["ms_per_batch"]) for t in data["throughput"]]
    assert rows == [(1, 100.0, 10.0), (8, 400.0, 20.0), (32, 800.0, 40.0)]
    assert (data["gpu"], data["tensorrt"]) == ("NVIDIA H100 80GB HBM3", "10.5.0")
    assert data["installed"] is True


def test_report_section_replaces_its_earlier_self(tmp_path: Path) -> None:
    page = tmp_path / "bench.md"
    write_report_section(page, "## first\n")
    assert page.read_text() == f"{SECTION_BEGIN}\n## first\n{SECTION_END}\n"
    page.write_text("# Benchmarks\n\nintro\n\n" + page.read_text() + "\ntail\n")
    write_report_section(page, "## second\n")
    section = f"{SECTION_BEGIN}\n## second\n{SECTION_END}\n"
    assert page.read_text() == f"# Benchmarks\n\nintro\n\n{section}\ntail\n"
    other = tmp_path / "other.md"
    other.write_text("# Page\n")
    write_report_section(other, "## added")
    assert other.read_text() == f"# Page\n\n{SECTION_BEGIN}\n## added\n{SECTION_END}\n"


# --- the tensorrt_plan config -----------------------------------------------------------------


@pytest.fixture()
def fake_repository(tmp_path: Path) -> Path:
    (tmp_path / "network.onnx").write_bytes(b"network")
    (tmp_path / "serving.onnx").write_bytes(b"serving")
    install_model(
        tmp_path / "repo",
        network_onnx=tmp_path / "network.onnx",
        serving_onnx=tmp_path / "serving.onnx",
        windows=(BONE_WINDOW,),
        threshold=0.4,
        model_version="test-1",
        max_batch_size=8,
    )
    return tmp_path / "repo"


def test_config_follows_the_profile_and_keeps_the_contract(fake_repository: Path) -> None:
    model_dir = fake_repository / "bonemets_trt"
    before = (model_dir / "config.pbtxt").read_text()
    configure_trt_model(model_dir, Profile(1, 16, 32), write=False)
    assert (model_dir / "config.pbtxt").read_text() == before
    configure_trt_model(model_dir, Profile(1, 16, 32))
    config = _parse(model_dir / "config.pbtxt")
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 32)
    # install_model kept only 4 and 8 for its max of 8; preferred sizes are capped, not added.
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    tensors = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims))
               for t in [*config.input, *config.output]]
    assert tensors == [
        ("HU", "TYPE_FP16", [512, 512]),
        ("MASK", "TYPE_UINT8", [512, 64]),
        ("PROBABILITY", "TYPE_UINT8", [128, 128]),
    ]
    assert config.parameters["threshold"].string_value == "0.4"
    assert config.parameters["model_version"].string_value == "test-1"
    written = (model_dir / "config.pbtxt").read_text()
    assert written.startswith("# Written by export/packaging/repository.py")


def test_config_caps_preferred_sizes_at_a_smaller_profile(tmp_path: Path) -> None:
    (tmp_path / "n.onnx").write_bytes(b"n")
    install_model(
        tmp_path / "repo", network_onnx=tmp_path / "n.onnx", serving_onnx=tmp_path / "n.onnx",
        windows=(BONE_WINDOW,), threshold=0.5, model_version="v",
    )
    model_dir = tmp_path / "repo" / "bonemets_trt"
    configure_trt_model(model_dir, Profile(1, 4, 12))
    config = _parse(model_dir / "config.pbtxt")
    assert config.max_batch_size == 12
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]


def test_config_of_another_platform_is_refused_and_left_alone(fake_repository: Path) -> None:
    model_dir = fake_repository / "bonemets"  # the Python-backend CPU model
    before = (model_dir / "config.pbtxt").read_text()
    with pytest.raises(ValueError, match="platform is '', not 'tensorrt_plan'"):
        configure_trt_model(model_dir, Profile())
    assert (model_dir / "config.pbtxt").read_text() == before
    with pytest.raises(FileNotFoundError, match="bonemets export onnx"):
        configure_trt_model(fake_repository / "missing_trt", Profile())


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [["--opt-batch", "64"], ["--min-batch", "0"], ["--max-batch", "16", "--opt-batch", "8"]],
)
def test_inconsistent_batches_exit_2_before_any_work(tmp_path: Path, extra: list[str]) -> None:
    # The third: the default timed batches (1, 8, 32) do not fit a profile that stops at 16.
    assert bonemets(["export", "tensorrt", "--repository", str(tmp_path), *extra]) == 2


def test_batch_list_argument_is_checked(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        bonemets(["export", "tensorrt", "--repository", str(tmp_path), "--batches", "1,x"])
    assert exited.value.code == 2


def test_missing_serving_onnx_exits_2(tmp_path: Path) -> None:
    assert bonemets(["export", "tensorrt", "--repository", str(tmp_path / "none")]) == 2


# --- the pipeline, ONNX Runtime standing in for the engine ------------------------------------


def _onnx_repository(root: Path, threshold: float) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    checkpoint = root / "random.pt"
    init = ["export", "init", "--depth", "18", "--width", "0.125", "--out", str(checkpoint)]
    assert bonemets([*init, "--threshold", str(threshold)]) == 0
    repository = root / "repo"
    assert bonemets(["export", "onnx", str(checkpoint), "--repository", str(repository)]) == 0
    return repository


@pytest.fixture(scope="module")
def onnx_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random network whose logits on phantoms lie in about -6.4..-2.6: at a threshold of
    0.01 (logit -4.6) around a tenth of the pixels are mask, so Dice has something to count."""
    return _onnx_repository(tmp_path_factory.mktemp("trt"), threshold=0.01)


class _OnnxRuntimeEngine:
    """The serving graph on ONNX Runtime's CPU provider, in the engine runner's place."""

    serving: Path
    flip_masks = False

    def __init__(self, plan: bytes) -> None:
        assert plan == b"fake plan"

    def run(self, hounsfield: npt.NDArray[np.int16]) -> tuple[Any, Any]:
        from export.packaging.onnx_export import run_onnx

        mask, probability = run_onnx(self.serving, {INPUT_NAME: hounsfield.astype(np.float16)})
        return (np.bitwise_not(mask) if self.flip_masks else mask), probability

    def throughput(
        self, hounsfield: Any, batch: int, *, warmup: int, iterations: int
    ) -> Throughput:
        return Throughput(batch=batch, iterations=iterations, seconds=0.5)


def _stand_in(monkeypatch: pytest.MonkeyPatch, repository: Path, *, flip: bool) -> None:
    engine = type("Engine", (_OnnxRuntimeEngine,), {
        "serving": repository / "bonemets_onnx_gpu" / "1" / "model.onnx", "flip_masks": flip,
    })
    monkeypatch.setattr(tensorrt_export, "tensorrt_version", lambda: "10.0-standin")
    monkeypatch.setattr(tensorrt_export, "build_engine", lambda *a, **k: b"fake plan")
    monkeypatch.setattr(tensorrt_export, "EngineRunner", engine)
    monkeypatch.setattr(tensorrt_export, "gpu_name", lambda: "stand-in")


def _command(repository: Path, out: Path) -> list[str]:
    return [
        "export", "tensorrt", "--repository", str(repository), "--parity-slices", "10",
        "--opt-batch", "8", "--max-batch", "16", "--batches", "1,8,16",
        "--out-json", str(out / "trt.json"), "--report", str(out / "bench.md"),
    ]


def test_pipeline_checks_installs_and_reports(
    onnx_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(onnx_repository, repository)
    _stand_in(monkeypatch, repository, flip=False)
    assert bonemets(_command(repository, tmp_path)) == 0
    assert (repository / "bonemets_trt" / "1" / "model.plan").read_bytes() == b"fake plan"
    assert _parse(repository / "bonemets_trt" / "config.pbtxt").max_batch_size == 16
    data = json.loads((tmp_path / "trt.json").read_text())
    parity = data["parity"]
    # The serving graph against the CPU path: the same decisions but for logits at the cut.
    assert parity["ok"] and parity["slices"] == 10 and parity["probability_max_difference"] <= 1
    assert parity["reference_pixels"] > 10_000 and parity["dice"] >= 0.999
    assert data["parity_seeds"][0] == 100_000
    assert [t["batch"] for t in data["throughput"]] == [1, 8, 16]
    assert data["installed"] and data["tensorrt"] == "10.0-standin"
    assert "| 16 | 1600.0 | 10.000 | 50 |" in (tmp_path / "bench.md").read_text()


def test_pipeline_installs_nothing_when_parity_fails(
    onnx_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(onnx_repository, repository)
    config_before = (repository / "bonemets_trt" / "config.pbtxt").read_text()
    _stand_in(monkeypatch, repository, flip=True)
    assert bonemets(_command(repository, tmp_path)) == 1
    assert not (repository / "bonemets_trt" / "1" / "model.plan").exists()
    assert (repository / "bonemets_trt" / "config.pbtxt").read_text() == config_before
    data = json.loads((tmp_path / "trt.json").read_text())
    assert not data["parity"]["ok"] and not data["installed"]
    assert data["parity"]["dice"] == 0.0  # an inverted mask overlaps nowhere


def test_parity_slices_come_from_held_out_phantoms_lesions_first() -> None:
    from export.phantoms import make_phantom, sample_spec

    hounsfield, seeds = tensorrt_export.parity_hounsfield(3)
    assert hounsfield.shape == (3, 512, 512) and hounsfield.dtype == np.int16
    assert seeds[0] == 100_000 and int(hounsfield.min()) >= -1024
    last = make_phantom(sample_spec(seeds[-1], size=512, slices=tensorrt_export.PHANTOM_SLICES))
    with_lesion = last.labels.reshape(len(last.labels), -1).any(axis=1)
    expected = np.maximum(last.hounsfield[with_lesion], np.int16(-1024))
    # Seeds before the last had too few lesion slices; the first lesion slices lead.
    assert any(np.array_equal(hounsfield[0], plane) for plane in expected)


# --- on a GPU with TensorRT -------------------------------------------------------------------


@pytest.fixture()
def gpu_tensorrt() -> None:
    pytest.importorskip("tensorrt", reason=GPU_REASON)
    torch = pytest.importorskip("torch", reason=GPU_REASON)
    if not torch.cuda.is_available():
        pytest.skip(GPU_REASON)


@pytest.mark.gpu
@pytest.mark.usefixtures("gpu_tensorrt")
def test_engine_matches_onnx_runtime_on_the_gpu(onnx_repository: Path) -> None:
    from api.inference.onnx_local import OnnxSegmenter
    from export.packaging.tensorrt_engine import EngineRunner, build_engine

    serving = onnx_repository / "bonemets_onnx_gpu" / "1" / "model.onnx"
    runner = EngineRunner(build_engine(serving, Profile(1, 2, 4), workspace_gb=1))
    assert runner.max_batch == 4
    hounsfield, _ = tensorrt_export.parity_hounsfield(6)  # two chunks: 4 and 2
    mask, probability = runner.run(hounsfield)
    assert (mask.shape, probability.shape) == ((6, 512, 64), (6, 128, 128))
    assert mask.dtype == probability.dtype == np.uint8
    reference = OnnxSegmenter.from_repository(onnx_repository).run_packed(hounsfield)
    parity = compare_outputs((mask, probability), reference)
    # This random network crowds its logits around the 0.01 cut, where FP16 flips the most
    # pixels; the 0.99 bar is the command's, for a trained network (the next test).
    assert parity.dice is not None and parity.dice >= 0.9, parity
    assert parity.probability_mean_difference <= 1.0, parity
    measured = runner.throughput(hounsfield, 4, warmup=1, iterations=3)
    assert (measured.batch, measured.iterations) == (4, 3)
    with pytest.raises(ValueError, match="outside the engine's profile"):
        runner.throughput(hounsfield, 5, warmup=0, iterations=1)


@pytest.mark.gpu
@pytest.mark.usefixtures("gpu_tensorrt")
def test_command_installs_a_checked_plan_on_the_gpu(tmp_path: Path) -> None:
    from export.packaging.tensorrt_engine import EngineRunner

    repository = _onnx_repository(tmp_path, threshold=0.5)  # masks empty: probabilities decide
    command = [
        "export", "tensorrt", "--repository", str(repository), "--parity-slices", "8",
        "--opt-batch", "4", "--max-batch", "8", "--batches", "1,8", "--iterations", "5",
        "--workspace-gb", "1", "--out-json", str(tmp_path / "trt.json"),
    ]
    assert bonemets(command) == 0
    plan = (repository / "bonemets_trt" / "1" / "model.plan").read_bytes()
    assert EngineRunner(plan).max_batch == 8
    assert _parse(repository / "bonemets_trt" / "config.pbtxt").max_batch_size == 8
    data = json.loads((tmp_path / "trt.json").read_text())
    assert data["builder"] == "python" and data["parity"]["ok"] and data["installed"]
    assert [t["batch"] for t in data["throughput"]] == [1, 8]

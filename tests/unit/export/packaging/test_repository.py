"""The Triton model repository writer: exact layout, configs Triton's own schema accepts,
and the committed ``model_repository/`` is exactly what it writes."""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from api.inference.bone_gate import BoneGate
from api.inference.contract import BONE_WINDOW, MODEL_NAME, Window
from api.inference.onnx_local import read_model_parameters
from export.packaging.reinstall import recorded_install, reinstall
from export.packaging.repository import PYTHON_MODEL_ENTRY, install_model

WINDOWS = (BONE_WINDOW, Window(40, 400))
COMMITTED = Path(__file__).resolve().parents[4] / "model_repository"


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


@pytest.fixture()
def repository(tmp_path: Path) -> Path:
    network = tmp_path / "network.onnx"
    network.write_bytes(b"network bytes")
    serving = tmp_path / "serving.onnx"
    serving.write_bytes(b"serving bytes")
    install_model(
        tmp_path / "repo",
        network_onnx=network,
        serving_onnx=serving,
        windows=WINDOWS,
        threshold=0.35,
        model_version="2026.11-r18",
        in_channels=2,
        max_batch_size=16,
        instances=2,
        bone_gate=BoneGate(250, 16, 2),
    )
    return tmp_path / "repo"


def test_layout_is_tritons(repository: Path) -> None:
    files = sorted(str(p.relative_to(repository)) for p in repository.rglob("*") if p.is_file())
    assert files == [
        "bonemets/1/model.onnx",
        "bonemets/1/model.py",
        "bonemets/config.pbtxt",
        "bonemets_onnx_gpu/1/model.onnx",
        "bonemets_onnx_gpu/config.pbtxt",
        "bonemets_trt/README.md",
        "bonemets_trt/config.pbtxt",
    ]
    assert (repository / "bonemets_trt" / "1").is_dir()
    assert (repository / "bonemets/1/model.onnx").read_bytes() == b"network bytes"
    assert (repository / "bonemets_onnx_gpu/1/model.onnx").read_bytes() == b"serving bytes"
    assert (repository / "bonemets/1/model.py").read_text() == PYTHON_MODEL_ENTRY


def test_cpu_config(repository: Path) -> None:
    config = _parse(repository / "bonemets" / "config.pbtxt")
    assert (config.name, config.backend, config.max_batch_size) == ("bonemets", "python", 16)
    (hu,) = config.input
    assert (hu.name, hu.data_type, list(hu.dims)) == ("HU", model_config_pb2.TYPE_INT16, [512, 512])
    outputs = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    assert outputs == {
        "MASK": (model_config_pb2.TYPE_UINT8, [512, 64]),
        "PROBABILITY": (model_config_pb2.TYPE_UINT8, [128, 128]),
    }
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]  # 32 > max batch
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)


def test_gpu_configs(repository: Path) -> None:
    onnx_gpu = _parse(repository / "bonemets_onnx_gpu" / "config.pbtxt")
    trt = _parse(repository / "bonemets_trt" / "config.pbtxt")
    assert (onnx_gpu.backend, onnx_gpu.default_model_filename) == ("onnxruntime", "model.onnx")
    assert (trt.platform, trt.default_model_filename) == ("tensorrt_plan", "model.plan")
    for config in (onnx_gpu, trt):
        assert config.input[0].data_type == model_config_pb2.TYPE_FP16
        assert [o.name for o in config.output] == ["MASK", "PROBABILITY"]
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    (accelerator,) = onnx_gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    readme = (repository / "bonemets_trt" / "README.md").read_text()
    assert "--maxShapes=HU:16x512x512" in readme and "--fp16" in readme


def test_every_variant_carries_the_same_parameters(repository: Path) -> None:
    expected = {
        "windows": "400:1800,40:400",
        "threshold": "0.35",
        "model_version": "2026.11-r18",
        "input_size": "512",
        "probability_stride": "4",
        "bone_gate": "250:16:2",
    }
    cpu = read_model_parameters(repository / "bonemets" / "config.pbtxt")
    assert cpu == {**expected, "intra_op_threads": "0"}
    for name in ("bonemets_onnx_gpu", "bonemets_trt"):
        assert read_model_parameters(repository / name / "config.pbtxt") == expected


def test_without_serving_graph_only_the_cpu_model(tmp_path: Path) -> None:
    network = tmp_path / "n.onnx"
    network.write_bytes(b"x")
    model_dir = install_model(
        tmp_path / "repo", network_onnx=network, serving_onnx=None, windows=(BONE_WINDOW,),
        threshold=0.5, model_version="v", version=3,
    )
    assert model_dir == tmp_path / "repo" / "bonemets"
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["bonemets"]
    assert (model_dir / "3" / "model.onnx").is_file()


def test_rejects_inconsistent_arguments(tmp_path: Path) -> None:
    network = tmp_path / "n.onnx"
    network.write_bytes(b"x")
    with pytest.raises(ValueError, match="windows"):
        install_model(tmp_path, network_onnx=network, serving_onnx=None, windows=WINDOWS,
                      threshold=0.5, model_version="v", in_channels=1)
    with pytest.raises(ValueError, match="quotes"):
        install_model(tmp_path, network_onnx=network, serving_onnx=None, windows=(BONE_WINDOW,),
                      threshold=0.5, model_version='v"1')


def _files(repository: Path) -> dict[str, bytes]:
    """The repository's files, less the bytecode Python (or Triton's stub) leaves beside
    model.py when it imports it: git ignores that, and install_model never writes it."""
    return {
        str(path.relative_to(repository)): path.read_bytes()
        for path in sorted(repository.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_committed_repository_is_what_install_model_writes(tmp_path: Path) -> None:
    # An edit to the writer (configs, model.py, README) that is not carried into
    # model_repository/ fails here rather than reaching `make serve` stale; the fix is
    # `python -m export.packaging.reinstall model_repository`.
    install_model(
        tmp_path,
        network_onnx=COMMITTED / MODEL_NAME / "1" / "model.onnx",
        serving_onnx=COMMITTED / f"{MODEL_NAME}_onnx_gpu" / "1" / "model.onnx",
        **recorded_install(COMMITTED),
    )
    written, committed = _files(tmp_path), _files(COMMITTED)
    assert sorted(committed) == sorted(written)
    for name, content in written.items():
        assert committed[name] == content, f"model_repository/{name} differs from install_model's"


def test_recorded_install_reads_back_what_was_installed(repository: Path) -> None:
    assert recorded_install(repository) == {
        "name": "bonemets",
        "windows": WINDOWS,
        "threshold": 0.35,
        "model_version": "2026.11-r18",
        "in_channels": 2,
        "max_batch_size": 16,
        "instances": 2,
        "preferred_batch_sizes": (4, 8, 16),
        "max_queue_delay_us": 2000,
        "intra_op_threads": 0,
        "bone_gate": BoneGate(250, 16, 2),
    }


def test_reinstall_rewrites_stale_files_in_place(repository: Path) -> None:
    before = _files(repository)
    (repository / "bonemets" / "1" / "model.py").write_text("# a stale copy\n")
    config = repository / "bonemets_trt" / "config.pbtxt"
    config.write_text(config.read_text().replace("# Written by", "# Once written by"))
    assert reinstall(repository) == repository / "bonemets"
    assert _files(repository) == before


def test_served_model_py_is_the_api_class(monkeypatch: pytest.MonkeyPatch) -> None:
    # Triton's stub provides triton_python_backend_utils; a stand-in lets the import resolve.
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("pb"))
    monkeypatch.delitem(sys.modules, "api.inference.triton_python_model", raising=False)
    namespace = runpy.run_path(str(COMMITTED / MODEL_NAME / "1" / "model.py"))
    served = sys.modules["api.inference.triton_python_model"]
    assert namespace["TritonPythonModel"] is served.TritonPythonModel
    assert served.__file__ == str(Path(__file__).resolve().parents[4] / "api" / "inference" /
                                  "triton_python_model.py")

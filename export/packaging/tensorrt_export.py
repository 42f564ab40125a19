"""``bonemets export tensorrt``: build the FP16 engine, check it, time it, install it for Triton.

The engine (:mod:`export.packaging.tensorrt_engine`) is built from the repository's
end-to-end serving ONNX, checked on held-out phantom slices against the CPU path
(:class:`~api.inference.onnx_local.OnnxSegmenter` on the same repository's network: pooled
mask Dice >= 0.99, probabilities within a level on average), timed at a few batch sizes, and
installed as ``<name>_trt/<version>/model.plan`` with its ``config.pbtxt`` matched to the
profile (:mod:`export.packaging.tensorrt_report`). Runs on a GPU host with TensorRT 10.x and a CUDA
torch; with only ``trtexec`` on PATH it builds, but cannot check or time, the engine.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from api.inference.contract import INPUT_SIZE, MODEL_NAME
from export.packaging.repository import ONNX_GPU_SUFFIX, TRT_SUFFIX
from export.packaging.tensorrt_config import configure_trt_model
from export.packaging.tensorrt_engine import (
    EngineRunner,
    build_engine,
    build_engine_trtexec,
    tensorrt_version,
)
from export.packaging.tensorrt_report import Profile, TensorrtReport, compare_outputs

__all__ = ["ExportSettings", "export_tensorrt", "gpu_name", "parity_hounsfield", "serving_onnx"]

log = logging.getLogger(__name__)

PHANTOM_SLICES = 32
MAX_PARITY_PHANTOMS = 16
REFERENCE_CHUNK = 8  # slices per ONNX Runtime call: bounds its activation memory


@dataclass(frozen=True)
class ExportSettings:
    """What to build and how to check and time it."""

    repository: Path
    onnx: Path
    name: str = MODEL_NAME
    version: int = 1
    profile: Profile = Profile()
    workspace_gb: float = 4.0
    parity_slices: int = 32
    batches: tuple[int, ...] = (1, 8, 32)
    warmup: int = 10
    iterations: int = 50
    skip_parity: bool = False

    @property
    def model_dir(self) -> Path:
        return self.repository / f"{self.name}{TRT_SUFFIX}"

    @property
    def plan_path(self) -> Path:
        return self.model_dir / str(self.version) / "model.plan"


def serving_onnx(repository: Path, name: str, version: int) -> Path:
    """Where ``bonemets export onnx`` put the serving graph the engine is built from."""
    return repository / f"{name}{ONNX_GPU_SUFFIX}" / str(version) / "model.onnx"


def gpu_name() -> str:
    """The first CUDA device's name, from torch or nvidia-smi; "unknown" without either."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().splitlines()[0]
    return "unknown"


def parity_hounsfield(
    count: int, first_seed: int | None = None
) -> tuple[npt.NDArray[np.int16], tuple[int, ...]]:
    """``count`` HU slices (512x512) of held-out phantoms, slices through lesions first.

    Seeds start at ``first_seed`` (default: the first held-out seed, which training never
    uses). Outside-FOV padding becomes air, as the gateway's PixelPaddingValue handling
    makes it. Returns the slices and the seeds of the phantoms drawn.
    """
    from api.dicom.geometry import AIR_HU
    from export.evaluation.data import HELD_OUT_FIRST_SEED
    from export.phantoms import make_phantom, sample_spec

    if first_seed is None:
        first_seed = HELD_OUT_FIRST_SEED

    lesion: list[npt.NDArray[np.int16]] = []
    plain: list[npt.NDArray[np.int16]] = []
    seeds: list[int] = []
    for seed in range(first_seed, first_seed + MAX_PARITY_PHANTOMS):
        if len(lesion) >= count:
            break
        phantom = make_phantom(sample_spec(seed, size=INPUT_SIZE, slices=PHANTOM_SLICES))
        hounsfield = np.maximum(phantom.hounsfield, np.int16(AIR_HU))
        has_lesion = phantom.labels.reshape(len(hounsfield), -1).any(axis=1)
        lesion.extend(hounsfield[has_lesion])
        plain.extend(hounsfield[~has_lesion])
        seeds.append(seed)
    chosen = (lesion + plain)[:count]
    if len(chosen) < count:
        raise ValueError(f"{MAX_PARITY_PHANTOMS} phantoms give fewer than {count} slices")
    return np.stack(chosen).astype(np.int16), tuple(seeds)


def _build(settings: ExportSettings, staged: Path, report: TensorrtReport) -> bytes | None:
    """The plan's bytes (Python API), or None after a trtexec build into ``staged``."""
    version = tensorrt_version()
    if version is None:
        build_engine_trtexec(
            settings.onnx, staged, settings.profile, workspace_gb=settings.workspace_gb
        )
        report.builder, report.tensorrt = "trtexec", "trtexec"
        return None
    report.builder, report.tensorrt = "python", version
    plan = build_engine(settings.onnx, settings.profile, workspace_gb=settings.workspace_gb)
    staged.write_bytes(plan)
    return plan


def _check_and_time(settings: ExportSettings, plan: bytes, report: TensorrtReport) -> None:
    from api.inference.onnx_local import OnnxSegmenter

    runner = EngineRunner(plan)
    hounsfield, seeds = parity_hounsfield(settings.parity_slices)
    if not settings.skip_parity:
        log.info("parity on %d slices of phantoms %s", len(hounsfield), seeds)
        segmenter = OnnxSegmenter.from_repository(settings.repository, settings.name)
        chunks = [
            segmenter.run_packed(hounsfield[start : start + REFERENCE_CHUNK])
            for start in range(0, len(hounsfield), REFERENCE_CHUNK)
        ]
        reference = (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]))
        report.parity = compare_outputs(runner.run(hounsfield), reference)
        report.parity_seeds = seeds
    for batch in settings.batches:
        measured = runner.throughput(
            hounsfield, batch, warmup=settings.warmup, iterations=settings.iterations
        )
        log.info("batch %d: %.1f slices/s", batch, measured.slices_per_second)
        report.throughput.append(measured)


def _install(staged: Path, settings: ExportSettings) -> None:
    target = settings.plan_path
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(staged, partial)
    os.replace(partial, target)  # Triton never sees half a plan
    configure_trt_model(settings.model_dir, settings.profile)


def export_tensorrt(settings: ExportSettings) -> TensorrtReport:
    """Build, check and time the engine; install plan and config when parity holds.

    ``report.installed`` says whether it was installed. Raises
    :class:`~export.packaging.tensorrt_engine.TensorrtUnavailable` without TensorRT or a GPU.
    """
    if not settings.onnx.is_file():
        raise FileNotFoundError(f"serving ONNX not found: {settings.onnx}")
    configure_trt_model(settings.model_dir, settings.profile, write=False)  # fail before building
    report = TensorrtReport(
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        gpu=gpu_name(),
        tensorrt="",
        builder="",
        onnx=str(settings.onnx),
        plan=str(settings.plan_path),
        profile=settings.profile,
        workspace_gb=settings.workspace_gb,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bonemets-trt-") as tmp,
        tqdm(total=3, desc="tensorrt", unit="step") as progress,
    ):
        staged = Path(tmp) / "model.plan"
        plan = _build(settings, staged, report)
        progress.update()
        if plan is not None:
            _check_and_time(settings, plan, report)
        elif not settings.skip_parity:
            log.error("a trtexec-built engine cannot be checked without the tensorrt Python "
                      "package; not installed (--skip-parity installs it unchecked)")
            return report
        progress.update()
        if report.parity is not None and not report.parity.ok:
            log.error("engine and ONNX Runtime disagree; not installed")
            return report
        _install(staged, settings)
        report.installed = True
        progress.update()
    return report

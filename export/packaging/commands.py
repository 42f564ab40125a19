"""What the steps of ``bonemets export`` do (the command line is :mod:`export.packaging.cli`).

Heavy imports (torch, onnx, onnxruntime, TensorRT) happen inside the steps.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PARITY_SLICES = 3
# Mask bits the serving graph may disagree on with the CPU path: both threshold in logit
# space, so only a pixel whose logit differs in the last bits between the two ONNX graphs,
# right at the threshold, can flip.
MASK_BITS_ALLOWED = 16


def _tensorrt_settings(args: argparse.Namespace) -> Any:
    """The command line as ``ExportSettings``, or None (logged) when it does not hold together."""
    from export.packaging.tensorrt_export import ExportSettings, serving_onnx
    from export.packaging.tensorrt_report import Profile

    try:
        profile = Profile(args.min_batch, args.opt_batch, args.max_batch)
    except ValueError as exc:
        log.error("%s", exc)
        return None
    if outside := [size for size in args.batches if not profile.covers(size)]:
        log.error("batch sizes %s lie outside the profile %s", outside, profile)
        return None
    if profile.minimum > 1:
        log.warning("Triton sends batches from 1: --min-batch %d refuses less", profile.minimum)
    return ExportSettings(
        repository=args.repository,
        onnx=args.onnx or serving_onnx(args.repository, args.name, args.version),
        name=args.name,
        version=args.version,
        profile=profile,
        workspace_gb=args.workspace_gb,
        parity_slices=args.parity_slices,
        batches=args.batches,
        warmup=args.warmup,
        iterations=args.iterations,
        skip_parity=args.skip_parity,
    )


def run_tensorrt(args: argparse.Namespace) -> int:
    """Build, check, time and install the TensorRT engine; print and write the results."""
    from export.packaging.tensorrt_engine import TensorrtUnavailable
    from export.packaging.tensorrt_export import export_tensorrt
    from export.packaging.tensorrt_report import report_markdown, write_report_section

    settings = _tensorrt_settings(args)
    if settings is None:
        return 2
    try:
        report = export_tensorrt(settings)
    except (TensorrtUnavailable, FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    section = report_markdown(report)
    print(section)
    if args.out_json is not None:
        report.write_json(args.out_json)
    if args.report is not None:
        write_report_section(args.report, section)
    if report.installed:
        print(f"installed {report.plan}")
    return 0 if report.installed else 1


def run_init(args: argparse.Namespace) -> int:
    """Write a randomly initialised checkpoint."""
    import torch

    from export.model import ModelConfig, build_model, parameter_count
    from export.model.checkpoint import save_checkpoint

    config = ModelConfig(
        depth=args.depth, width=args.width, in_channels=len(args.windows), norm=args.norm
    )
    torch.manual_seed(args.seed)
    model = build_model(config)
    version = args.version or f"random-r{args.depth}-w{args.width:g}-s{args.seed}"
    path = save_checkpoint(
        args.out,
        model,
        config,
        windows=args.windows,
        threshold=args.threshold,
        version=version,
        train_config={"init": "random", "seed": args.seed},
    )
    log.info("wrote %s (%d parameters, version %s)", path, parameter_count(model), version)
    return 0


def run_onnx(args: argparse.Namespace) -> int:
    """Export, check and install a checkpoint."""
    from tqdm import tqdm

    from api.inference.bone_gate import BoneGate
    from export.model.checkpoint import load_checkpoint
    from export.packaging.onnx_export import export_network_onnx, export_serving_onnx

    if not args.checkpoint.is_file():
        log.error("checkpoint not found: %s", args.checkpoint)
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="bonemets-export-") as tmp,
        tqdm(total=4, desc="export", unit="step") as progress,
    ):
        checkpoint = load_checkpoint(args.checkpoint)
        if checkpoint.config.context:
            log.error(
                "%s is a model with slice context (%d planes each side, %g mm apart): serving "
                "a context model is not supported yet; only 2D models (context 0) export",
                args.checkpoint, checkpoint.config.context, checkpoint.config.context_spacing_mm,
            )
            return 2
        if getattr(args, "bone_gate", None) is not None:
            checkpoint.bone_gate = BoneGate.parse(args.bone_gate)
        channels = checkpoint.config.in_channels
        progress.update()
        network = export_network_onnx(
            checkpoint.model, Path(tmp) / "model.onnx", in_channels=channels, opset=args.opset
        )
        serving = export_serving_onnx(
            checkpoint.model,
            Path(tmp) / "serving.onnx",
            windows=checkpoint.windows,
            threshold=checkpoint.threshold,
            opset=args.opset,
            bone_gate=checkpoint.bone_gate,
        )
        progress.update()
        if not args.skip_parity and not _check_parity(checkpoint, network, serving):
            return 1
        progress.update()
        installed = _install(args, checkpoint, network, serving)
        progress.update()
    print(f"installed {checkpoint.version} as {args.name} version {args.version} in {installed}")
    return 0


def _check_parity(checkpoint: Any, network: Path, serving: Path) -> bool:
    """PyTorch vs ONNX Runtime at batch sizes 1 and 3; serving graph vs numpy reference."""
    import numpy as np

    from api.inference.processing import window_channels
    from export.packaging.onnx_export import ct_like_slices, network_parity, serving_parity

    hounsfield = ct_like_slices(PARITY_SLICES, seed=0)
    images = window_channels(hounsfield, checkpoint.windows)
    ok = True
    for batch in (images[:1], images):
        parity = network_parity(checkpoint.model, network, batch)
        print(
            f"network parity, batch {len(batch)}: max |logits difference| "
            f"{parity.max_difference:.3g} (max |logit| {parity.max_logit:.3g}, "
            f"tolerance {parity.tolerance:.3g})"
        )
        ok = ok and parity.ok
    served = serving_parity(
        network,
        serving,
        hounsfield.astype(np.float16),
        windows=checkpoint.windows,
        threshold=checkpoint.threshold,
        bone_gate=checkpoint.bone_gate,
    )
    print(
        f"serving parity: {served.mask_bits_differing} mask bits differ, "
        f"probability max difference {served.probability_max_difference}"
    )
    ok = ok and served.mask_bits_differing <= MASK_BITS_ALLOWED
    ok = ok and served.probability_max_difference <= 1
    if not ok:
        log.error("parity check failed; nothing installed (rerun with --skip-parity to force)")
    return ok


def _install(args: argparse.Namespace, checkpoint: Any, network: Path, serving: Path) -> Path:
    # Lazy: the repository writer belongs to the serving side and may evolve on its own.
    from export.packaging.repository import install_model

    installed: Path = install_model(
        args.repository,
        network_onnx=network,
        serving_onnx=serving,
        name=args.name,
        version=args.version,
        windows=checkpoint.windows,
        threshold=checkpoint.threshold,
        model_version=checkpoint.version,
        bone_gate=checkpoint.bone_gate,
        in_channels=checkpoint.config.in_channels,
    )
    return installed

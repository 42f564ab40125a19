"""``bonemets export``: turn a checkpoint into ONNX and install it in a Triton repository.

``export onnx`` writes the bare network (for the CPU Python-backend model) and the
end-to-end serving graph (for the GPU variants), checks both against PyTorch and a numpy
reference on CT-like slices, then installs them. ``export init`` writes a randomly
initialised checkpoint, to bootstrap a repository before a trained model exists.
Heavy imports (torch, onnx, onnxruntime) happen inside the commands.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from api.inference.contract import BONE_WINDOW, DEFAULT_THRESHOLD, MODEL_NAME, parse_windows

log = logging.getLogger(__name__)

PARITY_SLICES = 3
# Mask bits the serving graph may disagree on with the CPU path: both threshold in logit
# space, so only a pixel whose logit differs in the last bits between the two ONNX graphs,
# right at the threshold, can flip.
MASK_BITS_ALLOWED = 16

EPILOG = """examples:
  bonemets export init --depth 18 --width 0.25 --seed 0 --out checkpoints/random.pt
  bonemets export onnx checkpoints/random.pt --repository model_repository/
  bonemets export onnx checkpoints/best.pt --repository model_repository/ --version 2
  bonemets export tensorrt --repository model_repository/   (on a GPU host)
"""


def add_parser(subparsers: Any) -> None:
    """Register ``bonemets export`` and its ``onnx`` and ``init`` subcommands."""
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX and install it in a Triton model repository",
        description="Turn a checkpoint into ONNX, check it, and install it in a Triton repository.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run, export_command=None)
    commands = parser.add_subparsers(dest="export_command", metavar="STEP")
    _add_onnx_parser(commands)
    _add_init_parser(commands)
    _add_tensorrt_parser(commands)


def _add_onnx_parser(commands: Any) -> None:
    onnx = commands.add_parser(
        "onnx",
        help="export network and serving graph, check parity, install into a repository",
        description="Export a checkpoint to ONNX, check it, install it for Triton.",
        epilog="examples:\n"
        "  bonemets export onnx checkpoints/random.pt --repository model_repository/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    onnx.add_argument("checkpoint", type=Path, help="checkpoint written by training or init")
    onnx.add_argument("--repository", type=Path, required=True, help="Triton model repository")
    onnx.add_argument("--name", default=MODEL_NAME, help="model name (default %(default)s)")
    onnx.add_argument("--version", type=int, default=1, help="Triton version folder (default 1)")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    onnx.add_argument("--skip-parity", action="store_true", help="skip the parity checks")


def _add_init_parser(commands: Any) -> None:
    init = commands.add_parser(
        "init",
        help="write a randomly initialised checkpoint",
        description="Write a randomly initialised checkpoint (tests, bootstrapping).",
        epilog="examples:\n"
        "  bonemets export init --depth 18 --width 0.25 --out checkpoints/random.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--out", type=Path, required=True, help="checkpoint path to write")
    init.add_argument("--depth", type=int, default=18, choices=(18, 34, 50), help="ResNet depth")
    init.add_argument("--width", type=float, default=0.25, help="channel width multiplier")
    init.add_argument("--norm", choices=("batch", "group"), default="batch", help="normalisation")
    init.add_argument("--seed", type=int, default=0, help="torch seed (default 0)")
    init.add_argument(
        "--windows",
        type=parse_windows,
        default=(BONE_WINDOW,),
        help=f"LEVEL:WIDTH per input channel, comma-separated (default {BONE_WINDOW})",
    )
    init.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="mask threshold")
    init.add_argument("--version", default=None, help="model version string (default derived)")


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,8,32, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 1,8,32, got {text!r}")
    return sizes


def _add_tensorrt_parser(commands: Any) -> None:
    trt = commands.add_parser(
        "tensorrt",
        help="build the TensorRT FP16 engine, check it against ONNX Runtime, time it, install it",
        description="Build an FP16 TensorRT engine from the repository's serving ONNX with a\n"
        "batch profile, check its masks against ONNX Runtime on held-out phantoms (Dice >=\n"
        "0.99), time it, install it as <name>_trt/<version>/model.plan. Needs an NVIDIA GPU,\n"
        "the tensorrt 10.x Python package and a CUDA build of torch; with only trtexec on\n"
        "PATH it builds the engine but cannot check it (installed only with --skip-parity).",
        epilog="examples:\n"
        "  bonemets export tensorrt --repository model_repository/\n"
        "  bonemets export tensorrt --repository model_repository/ --opt-batch 8 \\\n"
        "      --report docs/tensorrt.md --out-json tensorrt.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trt.add_argument("--repository", type=Path, required=True, help="Triton model repository")
    trt.add_argument("--name", default=MODEL_NAME, help="model name (default %(default)s)")
    trt.add_argument("--version", type=int, default=1, help="Triton version folder (default 1)")
    trt.add_argument(
        "--onnx", type=Path, help="serving ONNX (default: <name>_onnx_gpu/<version>/model.onnx)"
    )
    trt.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace (GiB)")
    trt.add_argument("--min-batch", type=int, default=1, help="profile minimum batch (default 1)")
    trt.add_argument("--opt-batch", type=int, default=16, help="profile optimum batch (16)")
    trt.add_argument("--max-batch", type=int, default=32, help="profile maximum batch (32)")
    trt.add_argument("--parity-slices", type=int, default=32, help="held-out phantom slices")
    trt.add_argument("--skip-parity", action="store_true", help="install without the check")
    trt.add_argument(
        "--batches", type=_batch_sizes, default=(1, 8, 32), help="batches to time (1,8,32)"
    )
    trt.add_argument("--warmup", type=int, default=10, help="untimed runs per batch size")
    trt.add_argument("--iterations", type=int, default=50, help="timed runs per batch size")
    trt.add_argument("--report", type=Path, help="markdown file to put the results section in")
    trt.add_argument("--out-json", type=Path, help="write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen export step."""
    if args.export_command == "onnx":
        return run_onnx(args)
    if args.export_command == "init":
        return run_init(args)
    if args.export_command == "tensorrt":
        return run_tensorrt(args)
    log.error("choose a step: bonemets export {onnx,init,tensorrt} (see bonemets export --help)")
    return 2


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
        in_channels=checkpoint.config.in_channels,
    )
    return installed

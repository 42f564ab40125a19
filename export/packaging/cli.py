"""``bonemets export``: turn a checkpoint into ONNX and install it in a Triton repository.

``export onnx`` writes the bare network (for the CPU Python-backend model) and the
end-to-end serving graph (for the GPU variants), checks both against PyTorch and a numpy
reference on CT-like slices, then installs them. ``export init`` writes a randomly
initialised checkpoint, to bootstrap a repository before a trained model exists.
The steps themselves are :mod:`export.packaging.commands`, imported when one runs, so that
heavy imports (torch, onnx, onnxruntime) stay out of ``--help``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from api.inference.contract import BONE_WINDOW, DEFAULT_THRESHOLD, MODEL_NAME, parse_windows

log = logging.getLogger(__name__)

EPILOG = """examples:
  bonemets export init --depth 18 --width 0.25 --seed 0 --out checkpoints/random.pt
  bonemets export onnx checkpoints/random.pt --repository model_repository/
  bonemets export onnx checkpoints/best.pt --repository model_repository/ --version 2
  bonemets export onnx models/demo.pt --repository model_repository/ --bone-gate 200:24:3
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


def _step_parser(commands: Any, name: str, help: str, description: str, *examples: str) -> Any:
    """The parser of one ``bonemets export`` step, its examples as the epilog."""
    return commands.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + "".join(f"  {example}\n" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_onnx_parser(commands: Any) -> None:
    onnx = _step_parser(
        commands,
        "onnx",
        "export network and serving graph, check parity, install into a repository",
        "Export a checkpoint to ONNX, check it, install it for Triton.",
        "bonemets export onnx checkpoints/random.pt --repository model_repository/",
    )
    onnx.add_argument("checkpoint", type=Path, help="checkpoint written by training or init")
    onnx.add_argument("--repository", type=Path, required=True, help="Triton model repository")
    onnx.add_argument("--name", default=MODEL_NAME, help="model name (default %(default)s)")
    onnx.add_argument("--version", type=int, default=1, help="Triton version folder (default 1)")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default 17)")
    onnx.add_argument("--skip-parity", action="store_true", help="skip the parity checks")
    onnx.add_argument(
        "--bone-gate",
        default=None,
        metavar="HU:CLOSE:DILATE",
        help="bone gate to serve with (e.g. 200:24:3; 'off' for none; default: the checkpoint's)",
    )


def _add_init_parser(commands: Any) -> None:
    init = _step_parser(
        commands,
        "init",
        "write a randomly initialised checkpoint",
        "Write a randomly initialised checkpoint (tests, bootstrapping).",
        "bonemets export init --depth 18 --width 0.25 --out checkpoints/random.pt",
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
    trt = _step_parser(
        commands,
        "tensorrt",
        "build the TensorRT FP16 engine, check it against ONNX Runtime, time it, install it",
        "Build an FP16 TensorRT engine from the repository's serving ONNX with a\n"
        "batch profile, check its masks against ONNX Runtime on held-out phantoms (Dice >=\n"
        "0.99), time it, install it as <name>_trt/<version>/model.plan. Needs an NVIDIA GPU,\n"
        "the tensorrt 10.x Python package and a CUDA build of torch; with only trtexec on\n"
        "PATH it builds the engine but cannot check it (installed only with --skip-parity).",
        "bonemets export tensorrt --repository model_repository/",
        "bonemets export tensorrt --repository model_repository/ --opt-batch 8 \\\n"
        "      --report docs/tensorrt.md --out-json tensorrt.json",
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
    from export.packaging import commands

    steps = {"onnx": commands.run_onnx, "init": commands.run_init,
             "tensorrt": commands.run_tensorrt}
    if args.export_command not in steps:
        log.error("choose a step: bonemets export {%s} (see bonemets export --help)",
                  ",".join(steps))
        return 2
    return steps[args.export_command](args)

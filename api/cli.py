"""The ``bonemets`` command: one entry point, a subcommand per task.

Each subcommand lives in its own module, which exposes ``add_parser(subparsers)``; that
function must stay cheap (no torch, no onnxruntime at import), so ``bonemets --help`` is
instant and the serving install never needs the training extra.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pickle
import sys
from collections.abc import Sequence

# In the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "api.commands.serve",
    "api.commands.triton",
    "export.phantoms.cli",
    "export.packaging.cli",
    "export.training.cli",
    "export.evaluation.cli",
    "export.bench.cli",
)

# What a command raises on input a user can fix: configs (wrong keys, types, values),
# missing or unwritable paths, files that are not what they claim (a checkpoint that is not).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes json.JSONDecodeError
    TypeError,
    OSError,  # FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError
    EOFError,
    pickle.UnpicklingError,
)

EPILOG = """examples:
  bonemets phantom --out data/phantoms --studies 4 --seed 1
  bonemets serve                      # gateway on :8000 plus a local Triton
  bonemets triton --http-port 8001    # Triton alone
  bonemets export onnx checkpoints/demo.pt --repository model_repository/
  bonemets <command> --help           # each command's own options and examples
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bonemets",
        description="Find bone metastases on CT: gateway, local Triton, phantoms, model tooling.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except USER_ERRORS as exc:
        # A bad config, argument, path or file is the user's to fix: one line, exit 2. With
        # -v the traceback follows, for the cases where it is ours.
        if args.verbose:
            raise
        message = str(exc) or type(exc).__name__
        print(f"bonemets {args.command}: error: {message} (-v for details)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bonemets {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

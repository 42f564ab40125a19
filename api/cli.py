"""The ``bonemets`` command: one entry point, a subcommand per task.

Each subcommand lives in its own module, which exposes ``add_parser(subparsers)``; that
function must stay cheap (no torch, no onnxruntime at import), so ``bonemets --help`` is
instant and the serving install never needs the training extra.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# In the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "api.commands.serve",
    "api.commands.triton",
    "export.phantoms.cli",
    "export.cli_export",
    "export.cli_train",
    "export.cli_evaluate",
    "export.bench.cli",
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
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())

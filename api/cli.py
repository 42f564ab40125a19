"""The ``bonemets`` command: one entry point, a subcommand per task.

The subcommands are the ``bonemets.commands`` entry points (pyproject.toml), each an
``add_parser(subparsers)`` in the package that owns the task, so the gateway does not own
the tooling's command line. ``add_parser`` must stay cheap (no torch, no onnxruntime at
import), so ``bonemets --help`` is instant. A command whose module cannot be imported (the
training extra missing in a serving install) is left out.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)

COMMAND_GROUP = "bonemets.commands"
# The order --help lists them in: a user's path from a server to the tooling. Installers
# write entry points sorted by name, so the order cannot live in pyproject.toml; commands
# not named here follow, by name.
HELP_ORDER = ("serve", "keys", "triton", "phantom", "export", "train", "evaluate",
              "evaluate-suite", "bench", "capacity", "load", "soak")

AddParser = Callable[[Any], None]

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
  bonemets serve                      # gateway on 127.0.0.1:8000 plus a local Triton
  bonemets keys create --client pacs  # an API key for a machine client, printed once
  bonemets triton --http-port 8001    # Triton alone
  bonemets export onnx checkpoints/demo.pt --repository model_repository/
  bonemets <command> --help           # each command's own options and examples
"""


def installed_commands() -> list[tuple[str, AddParser]]:
    """``(name, add_parser)`` of every command that imports, in :data:`HELP_ORDER`."""
    def rank(name: str) -> tuple[int, str]:
        return (HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER), name)

    commands = []
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda entry: rank(entry.name)):
        try:
            commands.append((entry.name, entry.load()))
        except ImportError as exc:
            log.debug("command %r left out: %s", entry.name, exc)
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bonemets",
        description="Find bone metastases on CT: gateway, local Triton, phantoms, model tooling.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = installed_commands()
    for _, add_parser in commands:
        add_parser(subparsers)
    if not commands:
        parser.epilog = (f"no commands found: the {COMMAND_GROUP!r} entry points come "
                         "with 'pip install -e .' (or 'make install')\n\n" + EPILOG)
    return parser


def _verbose(argv: Sequence[str]) -> bool:
    """``-v`` among the options before the command (known before the parser is built, so
    that the commands left out can say why)."""
    for token in argv:
        if token in ("-v", "--verbose"):
            return True
        if not token.startswith("-"):
            return False
    return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(
        level=logging.DEBUG if _verbose(argv) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    parser = build_parser()
    args = parser.parse_args(argv)
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

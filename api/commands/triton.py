"""``bonemets triton``: run the local Triton alone, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from api.commands.stopping import SignalStop, StopRequested

logger = logging.getLogger("bonemets.triton")

EPILOG = """examples:
  bonemets triton                                  # model_repository/, ports from BONEMETS_*
  bonemets triton --http-port 8001 --grpc-port 8002 --metrics-port 8003
  bonemets triton --repository /tmp/repo --model bonemets --address 0.0.0.0
"""


def add_parser(subparsers: Any) -> None:
    """Register ``bonemets triton``."""
    parser = subparsers.add_parser(
        "triton",
        help="run the local Triton Inference Server alone",
        description="Start the tritonserver bundled with nvidia-pytriton on the model "
        "repository, loading only the CPU model(s) named, and stop it cleanly (with its "
        "Python-backend processes) on SIGTERM or Ctrl-C.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repository", type=Path, default=None,
                        help="model repository (default: BONEMETS_MODEL_REPOSITORY)")
    parser.add_argument("--grpc-port", type=int, default=None, help="default 8101")
    parser.add_argument("--http-port", type=int, default=None, help="default 8100")
    parser.add_argument("--metrics-port", type=int, default=None, help="default 8102")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help="model to load; repeatable (default: BONEMETS_MODEL_NAME)")
    parser.add_argument("--log-verbose", type=int, default=0, help="Triton's verbose log level")
    parser.add_argument("--startup-timeout", type=float, default=120.0,
                        help="seconds to wait for readiness (default 120)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start Triton, wait for readiness, serve until a signal or until Triton dies."""
    from api.config import get_settings
    from api.tritonserver.launcher import LocalTriton, TritonStartError

    settings = get_settings()
    server = LocalTriton(
        args.repository or settings.model_repository,
        grpc_port=args.grpc_port or settings.triton_grpc_port,
        http_port=args.http_port or settings.triton_http_port,
        metrics_port=args.metrics_port or settings.triton_metrics_port,
        models=args.models or [settings.model_name],
        address=args.address,
        log_verbose=args.log_verbose,
    )
    with SignalStop() as stop:
        try:
            server.start()
            server.wait_ready(timeout_s=args.startup_timeout)
            print(f"Triton ready: gRPC {server.grpc_url}  HTTP {server.http_url}  "
                  f"metrics {server.metrics_url}", flush=True)
            while server.running:
                time.sleep(0.5)
            logger.error("tritonserver exited on its own: %s", "\n".join(server.log_tail()[-5:]))
            return 1
        except StopRequested as signal_name:
            logger.info("%s received, stopping Triton", signal_name)
            return 0
        except TritonStartError as exc:
            logger.error("%s", exc)
            return 1
        finally:
            # A second Ctrl-C must not interrupt the clean-up that prevents orphans.
            stop.shield()
            server.stop()

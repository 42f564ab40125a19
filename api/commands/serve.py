"""``bonemets serve``: the gateway on :8000, with a local Triton unless one is configured."""

from __future__ import annotations

import argparse
import logging
from contextlib import ExitStack

log = logging.getLogger(__name__)

EPILOG = """examples:
  bonemets serve                                  # local Triton + gateway on :8000
  bonemets serve --port 9000 --data-dir /srv/bonemets
  BONEMETS_TRITON_URL=triton:8001 bonemets serve  # use an external Triton (gRPC)

settings come from BONEMETS_* environment variables (see the README's table);
the options below override them.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the gateway (and a local Triton)",
        description="Run the REST gateway. Without BONEMETS_TRITON_URL it starts the bundled "
                    "tritonserver on the model repository first and stops it on exit.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--data-dir", help="results, masks and the job database")
    parser.add_argument("--repository", help="model repository for the local Triton")
    parser.add_argument("--triton-url", help="external Triton gRPC host:port")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.config import Settings
    from api.http.app import create_app

    overrides = {
        key: value for key, value in (
            ("data_dir", args.data_dir), ("model_repository", args.repository),
            ("triton_url", args.triton_url),
        ) if value is not None
    }
    settings = Settings(**overrides)
    with ExitStack() as stack:
        if settings.triton_url is None:
            from api.tritonserver.launcher import LocalTriton

            triton = stack.enter_context(LocalTriton(
                settings.model_repository, grpc_port=settings.triton_grpc_port,
                http_port=settings.triton_http_port, metrics_port=settings.triton_metrics_port,
                models=[settings.model_name],
            ))
            triton.wait_ready(timeout_s=180)
            log.info("local Triton ready on gRPC :%d", settings.triton_grpc_port)
        app = create_app(settings)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0

"""``bonemets serve``: the gateway, with a local Triton unless one is configured."""

from __future__ import annotations

import argparse
import logging
from contextlib import ExitStack

from api.commands.stopping import SignalStop, StopRequested
from api.config import Settings

log = logging.getLogger(__name__)

# What uvicorn.run exits with when the server could not start (a taken port).
STARTUP_FAILURE = 3

EPILOG = """examples:
  bonemets serve                                  # local Triton + gateway on 127.0.0.1:8000
  bonemets serve --port 9000 --data-dir /srv/bonemets
  BONEMETS_HOST=0.0.0.0 BONEMETS_PORT=9000 bonemets serve
  BONEMETS_TRITON_URL=triton:8001 bonemets serve  # use an external Triton (gRPC)

settings come from BONEMETS_* environment variables (see the README's table);
the options below override them. The service has no authentication yet: bind an address
other than 127.0.0.1 only behind something that has.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the gateway (and a local Triton)",
        description="Run the REST gateway. Without BONEMETS_TRITON_URL it starts the bundled "
                    "tritonserver on the model repository first and stops it on exit "
                    "(SIGTERM or Ctrl-C: a clean stop, exit 0).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to bind (default BONEMETS_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default BONEMETS_PORT, 8000)")
    parser.add_argument("--data-dir", help="results, masks and the job database")
    parser.add_argument("--repository", help="model repository for the local Triton")
    parser.add_argument("--triton-url", help="external Triton gRPC host:port")
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings, with the options given on the command line on top."""
    options = {
        "host": args.host, "port": args.port, "data_dir": args.data_dir,
        "model_repository": args.repository, "triton_url": args.triton_url,
    }
    return Settings(**{key: value for key, value in options.items() if value is not None})


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    stop = SignalStop()
    try:
        with stop:
            return _serve(settings, stop)
    except StopRequested as signal_name:
        log.info("%s received before the gateway started; stopped", signal_name)
        return 0


def _serve(settings: Settings, stop: SignalStop) -> int:
    import uvicorn

    from api.http.app import create_app

    with ExitStack() as stack:
        if settings.triton_url is None:
            from api.tritonserver.launcher import LocalTriton

            stack.enter_context(LocalTriton(
                settings.model_repository, grpc_port=settings.triton_grpc_port,
                http_port=settings.triton_http_port, metrics_port=settings.triton_metrics_port,
                models=[settings.model_name], startup_timeout_s=180,
            ))
            # Runs before Triton's stop: a second signal must not cut the clean-up short.
            stack.callback(stop.shield)
            log.info("local Triton ready on gRPC :%d", settings.triton_grpc_port)
        server = uvicorn.Server(uvicorn.Config(
            create_app(settings), host=settings.host, port=settings.port, log_level="info",
        ))
        # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
        # handler it found: ours, which must not kill the process before Triton is stopped.
        stop.forward_to(lambda: setattr(server, "should_exit", True))
        server.run()
    if stop.received is not None:
        log.info("%s received; gateway stopped", stop.received)
    elif not server.started:
        return STARTUP_FAILURE
    return 0

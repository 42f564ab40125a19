"""``bonemets serve``: the gateway, with a local Triton unless one is configured."""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import ExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from api.commands.access import check_auth_mode, check_tls, first_start_key
from api.commands.stopping import SignalStop, StopRequested
from api.config import Settings
from api.delivery.destinations import load_destinations
from api.delivery.webhook_clients import load_webhooks
from api.logs import use_log_format

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

# What uvicorn.run exits with when the server could not start (a taken port).
STARTUP_FAILURE = 3

EPILOG = """examples:
  bonemets serve                                  # local Triton + gateway on 127.0.0.1:8000
  bonemets serve --port 9000 --data-dir /srv/bonemets
  BONEMETS_HOST=0.0.0.0 BONEMETS_PORT=9000 bonemets serve
  BONEMETS_TRITON_URL=triton:8001 bonemets serve  # use an external Triton (gRPC)
  bonemets serve --host 0.0.0.0 --ssl-certfile cert.pem --ssl-keyfile key.pem   # HTTPS
  BONEMETS_AUTH=off bonemets serve                # no credentials: loopback only, warned
  bonemets serve --dicom-port 11112 --ae-title BONEMETS   # also a DICOM (C-STORE) listener
  bonemets serve --destinations /etc/bonemets/destinations.toml   # SEG and SR to the PACS
  BONEMETS_WEBHOOK_ALLOW=ris.example.org bonemets serve --webhooks webhooks.toml
  bonemets serve --role api --port 8000           # an API replica (shared database and store)
  bonemets serve --role worker --port 8080        # a worker: runs jobs; /healthz, /readyz only

settings come from BONEMETS_* environment variables (see the README's table);
the options below override them. Every route but /healthz, /readyz and the API docs asks
for credentials: the first start with no API key prints a development key, once (more with
'bonemets keys create'). docs/security.md says how to serve other machines safely.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the gateway (and a local Triton)",
        description="Run the REST gateway. Without BONEMETS_TRITON_URL it starts the bundled "
                    "tritonserver on the model repository first and stops it on exit "
                    "(SIGTERM or Ctrl-C: a clean stop, exit 0).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--role", choices=("all", "api", "worker"),
                        help="all: one process (default); api: uploads and reads, jobs"
                             " queued; worker: claims and runs jobs (default BONEMETS_ROLE;"
                             " docs/deploy.md)")
    parser.add_argument("--host", help="address to bind (default BONEMETS_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default BONEMETS_PORT, 8000)")
    parser.add_argument("--data-dir", help="results, masks and the job database")
    parser.add_argument("--repository", help="model repository for the local Triton")
    parser.add_argument("--triton-url", help="external Triton gRPC host:port")
    parser.add_argument("--ssl-certfile", help="PEM certificate: serve HTTPS"
                                               " (default BONEMETS_SSL_CERTFILE)")
    parser.add_argument("--ssl-keyfile", help="its PEM private key (default BONEMETS_SSL_KEYFILE)")
    parser.add_argument("--dicom-port", type=int,
                        help="also listen for DICOM C-STORE and C-ECHO on this port"
                             " (default BONEMETS_DICOM_PORT; unset: no listener)")
    parser.add_argument("--ae-title", help="the listener's AE title (default BONEMETS_AE_TITLE,"
                                           " BONEMETS)")
    parser.add_argument("--destinations",
                        help="TOML file of the PACS destinations (STOW-RS, C-STORE) each"
                             " finished study's SEG and SR go to (default"
                             " BONEMETS_DESTINATIONS; docs/integration.md)")
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="the log on stderr: text lines, or JSON lines with request and"
                             " job ids (default BONEMETS_LOG_FORMAT, text;"
                             " docs/operations.md)")
    parser.add_argument("--webhooks",
                        help="TOML file of the clients called back when their jobs end"
                             " (secrets, default URLs; default BONEMETS_WEBHOOKS; hosts"
                             " allowed by BONEMETS_WEBHOOK_ALLOW; docs/integration.md)")
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings, with the options given on the command line on top."""
    options = {
        "host": args.host, "port": args.port, "data_dir": args.data_dir,
        "model_repository": args.repository, "triton_url": args.triton_url,
        "ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile,
        "dicom_port": getattr(args, "dicom_port", None),
        "ae_title": getattr(args, "ae_title", None),
        "destinations": getattr(args, "destinations", None),
        "role": getattr(args, "role", None),
        "log_format": getattr(args, "log_format", None),
        "webhooks": getattr(args, "webhooks", None),
    }
    return Settings(**{key: value for key, value in options.items() if value is not None})


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    use_log_format(settings.log_format)
    check_auth_mode(settings)
    check_tls(settings)
    # A wrong destinations file (or a secret it names missing) stops here, before Triton.
    load_destinations(settings.destinations)
    load_webhooks(settings.webhooks, settings.webhook_allow)  # the same for webhooks
    # A worker takes no request that needs a key: it makes none.
    on_started = first_start_key(settings) if settings.role != "worker" else (lambda: None)
    stop = SignalStop()
    try:
        with stop:
            return _serve(settings, stop, on_started)
    except StopRequested as signal_name:
        log.info("%s received before the gateway started; stopped", signal_name)
        return 0


def _serve(settings: Settings, stop: SignalStop, on_started: Callable[[], None]) -> int:
    import uvicorn

    from api.http.access_log import hide_query_strings, uvicorn_logging
    from api.http.app import create_app

    with ExitStack() as stack:
        if settings.triton_url is None and settings.role != "api":
            from api.tritonserver.launcher import LocalTriton

            stack.enter_context(LocalTriton(
                settings.model_repository, grpc_port=settings.triton_grpc_port,
                http_port=settings.triton_http_port, metrics_port=settings.triton_metrics_port,
                models=[settings.model_name], startup_timeout_s=180,
            ))
            # Runs before Triton's stop: a second signal must not cut the clean-up short.
            stack.callback(stop.shield)
            log.info("local Triton ready on gRPC :%d", settings.triton_grpc_port)
        app = create_app(settings)
        if settings.role != "worker":  # C-STORE in is an API replica's (or the one process's)
            with_dicom_listener(app)
        server = _announcing_server(uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="info",
            ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile,
            **uvicorn_logging(settings.log_format),
        ), on_started)
        hide_query_strings()  # after uvicorn.Config, which configures its loggers
        # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
        # handler it found: ours, which must not kill the process before Triton is stopped.
        stop.forward_to(lambda: setattr(server, "should_exit", True))
        server.run()
    if stop.received is not None:
        log.info("%s received; gateway stopped", stop.received)
    elif not server.started:
        return STARTUP_FAILURE
    return 0


def with_dicom_listener(app: FastAPI) -> None:
    """Run the DICOM listener (when ``dicom_port`` is set) inside the app's lifespan: it
    starts once the job runner is up and stops before it, with the gateway."""
    from api.dimse.service import dicom_listener

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        async with inner(app) as state:
            assert state is not None, "create_app's lifespan hands over its services"
            async with dicom_listener(state["services"]):
                yield state

    app.router.lifespan_context = lifespan


def _announcing_server(config: Any, on_started: Callable[[], None]) -> Any:
    """A uvicorn server that calls ``on_started`` once it listens (after its own "running
    on" line, so that what it prints is the last thing a user sees)."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                on_started()

    return AnnouncingServer(config)

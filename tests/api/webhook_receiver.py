"""A real HTTP receiver of webhook events, on a free port of 127.0.0.1, in a thread: it
answers with the statuses it is given and keeps each request, checked with the Standard
Webhooks library's own verifier."""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: Any  # the parsed event once the signature checked out; None otherwise
    at: float


@dataclass
class Receiver:
    """Answers ``statuses`` in turn (the last one from then on); HTTPS given ``tls``."""

    secret: str
    statuses: list[int] = field(default_factory=lambda: [204])
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verified = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    verified = None
                receiver.received.append(Received(headers, body, verified, time.time()))
                status = receiver.statuses[min(len(receiver.received),
                                               len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events?token=t0k3n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(folder: Path, name: str = "localhost") -> tuple[Path, ssl.SSLContext]:
    """A certificate for ``name`` that is its own CA (its PEM file, for the client to trust)
    and the server's TLS context serving it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "receiver.pem", folder / "receiver.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


def webhooks_file(folder: Path, secret_env: str, url: str | None = None, *,
                  give_up_s: float = 30.0, client: str = "tests",
                  ca_file: Path | None = None) -> Path:
    """A webhooks file for ``client``, with retry times small enough for a test."""
    path = folder / "webhooks.toml"
    default = "" if url is None else f'url = "{url}"\n'
    trusted = "" if ca_file is None else f'ca_file = "{ca_file}"\n'
    path.write_text(f"""timeout_s = 2
backoff_s = 0.05
backoff_max_s = 0.2
give_up_s = {give_up_s}
{trusted}

[[client]]
client = "{client}"
secret_env = "{secret_env}"
{default}""")
    return path


def wait_webhook(read: Any, job_id: str, states: tuple[str, ...] = ("delivered", "failed"),
                 timeout_s: float = 15) -> Any:
    """The job's one webhook row once it reaches one of ``states``."""
    deadline = time.monotonic() + timeout_s
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = read(job_id)
        if rows and rows[0].state.value in states:
            return rows[0]
        time.sleep(0.02)
    raise AssertionError(f"webhook of {job_id} did not reach {states}: {rows}")


def event_of(received: Received) -> Any:
    return json.loads(received.body)

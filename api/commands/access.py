"""What ``bonemets serve`` checks and says about access before and as it starts.

- ``BONEMETS_AUTH=off`` answers anyone without credentials: it is warned at every start and
  refused on any address but loopback.
- With credentials on and no API key yet, the first start makes a development key and
  prints it once, to the terminal only (never through ``logging``: log files are kept and
  shipped; the key must not be in them).
- ``--ssl-certfile/--ssl-keyfile`` are loaded once before anything starts, so a wrong file
  is a one-line error, not a traceback after the local Triton came up.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import sys
from collections.abc import Callable
from typing import TextIO

from api.auth.keys import KeyStore, open_key_store
from api.commands.keys import DEFAULT_CLIENT_SCOPES
from api.config import Settings

log = logging.getLogger(__name__)

DEV_CLIENT = "local-dev"
WILDCARD_HOSTS = {"", "0.0.0.0", "::"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` reaches this machine only: ``localhost``, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # another host name: where it resolves is not ours to trust
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_auth_mode(settings: Settings) -> None:
    """Refuse ``BONEMETS_AUTH=off`` on a non-loopback address; warn about it on loopback."""
    if settings.auth != "off":
        return
    if not is_loopback(settings.host):
        raise ValueError(
            f"BONEMETS_AUTH=off serves without credentials, so it binds only a loopback address"
            f" (127.0.0.1, ::1, localhost), not {settings.host!r}; turn authentication on"
            " to serve other machines"
        )
    log.warning("BONEMETS_AUTH=off: no credentials are asked; anyone who can reach %s:%d may"
                " submit, read and delete every study. For local work only.",
                settings.host, settings.port)


def check_tls(settings: Settings) -> None:
    """Load the certificate and key once, so that a wrong one stops ``serve`` at once."""
    if settings.ssl_keyfile is not None and settings.ssl_certfile is None:
        raise ValueError("--ssl-keyfile needs --ssl-certfile (BONEMETS_SSL_CERTFILE)")
    if settings.ssl_certfile is None:
        return
    for path in (settings.ssl_certfile, settings.ssl_keyfile):
        if path is not None and not path.is_file():
            raise ValueError(f"no such certificate or key file: {path}")
    # SSLError is an OSError: the command line reports it in one line.
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
        settings.ssl_certfile, settings.ssl_keyfile
    )


def base_url(settings: Settings) -> str:
    """Where a client on this machine reaches the gateway (``BONEMETS_PUBLIC_URL`` if set)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = "https" if settings.ssl_certfile is not None else "http"
    host = "localhost" if settings.host in WILDCARD_HOSTS else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"


def key_store(settings: Settings) -> KeyStore:
    """The key store the gateway reads, as ``settings`` name it."""
    return open_key_store(settings.data_dir, settings.database_url, settings.key_pepper_hex)


def first_start_key(settings: Settings, out: TextIO | None = None) -> Callable[[], None]:
    """What to do once the gateway listens: print a new development key if the store has
    none (made only then, so a start that fails does not hide a key never shown), else say
    where the keys are. Opening the store here makes an unwritable data directory fail
    before anything starts."""
    if settings.auth == "off":
        return lambda: None
    store = key_store(settings)
    where = store.where
    try:
        keys = store.list()
    finally:
        store.close()
    if keys:
        active = sum(key.active for key in keys)
        return lambda: log.info(
            "API keys: %d active of %d in %s; the development key was shown at the first"
            " start only; make another with 'bonemets keys create --client NAME'",
            active, len(keys), where)

    def make_and_print() -> None:
        store = key_store(settings)
        try:
            _, key = store.create(DEV_CLIENT, DEFAULT_CLIENT_SCOPES)
        finally:
            store.close()
        print(dev_key_banner(key, settings, where), file=out or sys.stderr, flush=True)

    return make_and_print


def dev_key_banner(key: str, settings: Settings, where: str) -> str:
    """The block that shows the development key, the once it is shown."""
    url = base_url(settings)
    rule = "=" * 78
    return "\n".join([
        rule,
        f" A development API key was made for client {DEV_CLIENT!r}",
        f" (scopes: {' '.join(DEFAULT_CLIENT_SCOPES)}).",
        " It is shown only this once and stored only as a hash: copy it now.",
        "",
        f"   {key}",
        "",
        " Send it with every request, e.g.:",
        f'   curl -H "Authorization: Bearer {key}" \\',
        f'        -F "files=@study.zip" "{url}/v1/studies?wait=120"',
        "",
        f" More keys: bonemets keys create --client NAME   (stored in"
        f" {where})",
        rule,
    ])

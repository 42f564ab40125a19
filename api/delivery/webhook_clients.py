"""Who may be called back when a job ends: the webhooks file (TOML), read once at start.

    timeout_s = 5          # each attempt (optional; these four are the defaults)
    backoff_s = 10         # wait before the second attempt; doubles, with jitter
    backoff_max_s = 600    # longest wait between two attempts
    give_up_s = 86400      # after the job's end, a failing event is failed for good
    ca_file = "/etc/bonemets/hospital-ca.pem"   # a private CA for HTTPS receivers (optional)

    [[client]]
    client = "ris-router"                               # the API client (its key or token)
    secret_env = "RIS_WEBHOOK_SECRET"                   # holds whsec_<base64>, never this file
    url = "https://ris.example.org/bonemets/events"     # default, when a study names none

A study's ``callback_url`` (submission metadata), or else its client's ``url``, is called
with the event signed by that client's secret (Standard Webhooks). A client without an entry
here cannot ask for callbacks; every URL must also pass the allow-list
(:mod:`api.delivery.allow_list`).
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import certifi
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from standardwebhooks.webhooks import Webhook

from api.delivery.allow_list import AllowList
from api.errors import CallbackRefused
from api.study.jobs import Job

SECRET_PREFIX = "whsec_"
URL = r"^https?://\S+$"


class WebhookClient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    client: str = Field(min_length=1, max_length=128)
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    url: str | None = Field(default=None, max_length=2048, pattern=URL)


class WebhookFile(BaseModel):
    """The file's contents; the retry times are seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(default=5.0, gt=0)
    backoff_s: float = Field(default=10.0, gt=0)
    backoff_max_s: float = Field(default=600.0, gt=0)
    give_up_s: float = Field(default=86400.0, gt=0)
    ca_file: Path | None = None  # trusted besides the system's CAs
    client: list[WebhookClient] = []


class Webhooks:
    """The callers that may be called back, their secrets, and the allow-list."""

    def __init__(self, config: WebhookFile, allow: AllowList,
                 secrets: Mapping[str, bytes]) -> None:
        self.config = config
        self.allow = allow
        self._signers = {client: Webhook(secret) for client, secret in secrets.items()}
        self._defaults = {c.client: c.url for c in config.client if c.url}

    def check_callback(self, url: str, client: str | None) -> None:
        """Refuse (CallbackRefused, 422) a callback URL ``client`` may not ask for: a client
        without a webhook secret, a URL that is not plain http(s), or a host not allowed."""
        if client is None or client not in self._signers:
            raise CallbackRefused("this client has no webhook secret configured"
                                  " (BONEMETS_WEBHOOKS), so it cannot be called back")
        target = parse_callback(url)
        if not self.allow.permits_host(target.hostname or ""):
            raise CallbackRefused("the callback URL's host is not on the allow-list"
                                  " (BONEMETS_WEBHOOK_ALLOW)")

    def url_of(self, job: Job) -> str | None:
        """Where ``job``'s end is announced: its own callback_url, else its client's."""
        return job.metadata.callback_url or self._defaults.get(job.owner or "")

    def signer(self, client: str | None) -> Webhook | None:
        """The Standard Webhooks signer of ``client``'s secret; None when it has none."""
        return self._signers.get(client or "")


def parse_callback(url: str) -> SplitResult:
    """``url`` split, once it is plain http(s) with a host and no credentials in it."""
    try:
        target = urlsplit(url)
        target.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise CallbackRefused("the callback URL cannot be parsed") from None
    if target.scheme not in ("http", "https") or not target.hostname:
        raise CallbackRefused("the callback URL must be http:// or https:// with a host")
    if target.username is not None or target.password is not None:
        raise CallbackRefused("the callback URL must not carry credentials")
    return target


def load_webhooks(path: Path | None, allow_text: str) -> Webhooks:
    """The webhooks file at ``path`` (none: nobody is called back) and the allow-list;
    ValueError says what is wrong: the file, a missing secret, a default URL not allowed."""
    allow = AllowList.parse(allow_text)
    if path is None:
        return Webhooks(WebhookFile(), allow, {})
    try:
        config = WebhookFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                             for error in exc.errors(include_url=False))
        raise ValueError(f"{path}: {problems}") from None
    try:
        trusted_cas(config)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{path}: ca_file: {exc.strerror or exc}") from None
    names = [c.client for c in config.client]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: each client may have one [[client]] table")
    secrets = {c.client: _secret(c) for c in config.client}
    webhooks = Webhooks(config, allow, secrets)
    for entry in config.client:
        if entry.url is not None:
            try:
                webhooks.check_callback(entry.url, entry.client)
            except CallbackRefused as exc:
                raise ValueError(f"{path}: client {entry.client}: {exc.detail}") from None
    return webhooks


def trusted_cas(config: WebhookFile) -> ssl.SSLContext:
    """The CAs an HTTPS receiver's certificate may come from: httpx's own (certifi's), and
    the file's ``ca_file`` when there is one."""
    trusted = ssl.create_default_context(cafile=certifi.where())
    if config.ca_file is not None:
        trusted.load_verify_locations(config.ca_file)
    return trusted


def _secret(entry: WebhookClient) -> bytes:
    """The secret's bytes, from ``whsec_<base64>`` in the environment variable named."""
    value = os.environ.get(entry.secret_env, "")
    where = f"client {entry.client}: environment variable {entry.secret_env}"
    if not value:
        raise ValueError(f"{where} is not set")
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"{where} must hold whsec_ and the secret in base64")
    try:
        secret = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"{where}: the secret after whsec_ is not base64") from None
    if not 24 <= len(secret) <= 64:  # Standard Webhooks: 24 to 64 bytes
        raise ValueError(f"{where}: the secret must be 24 to 64 bytes")
    return secret

"""Where finished studies' SEG and SR (or, to a FHIR server, their Bundle) go: the
destinations file (TOML), read once at start.

    [[destination]]
    name = "pacs-web"
    kind = "stow-rs"
    url = "https://pacs.example.org/dicom-web"   # the DICOMweb root: /studies is added
    username = "bonemets"
    password_env = "PACS_WEB_PASSWORD"           # secrets by environment variable, never here
    clients = ["*"]                               # every client's studies (the default)

    [[destination]]
    name = "pacs-dimse"
    kind = "c-store"
    ae_title = "ORTHANC"
    host = "pacs.example.org"
    port = 4242
    clients = ["ris-router", "dimse-CT1"]         # only these clients' studies

    [[destination]]
    name = "ehr"
    kind = "fhir"
    url = "https://fhir.example.org/r4"          # the FHIR base: the transaction is POSTed there
    token_env = "EHR_FHIR_TOKEN"                  # or username + password_env; ca_file, timeout_s

A study goes to every destination whose ``clients`` name its owner (or ``*``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

NAME = r"^[A-Za-z0-9._-]{1,64}$"
# PS3.5 6.2: up to 16 printable characters, not the backslash, not only spaces.
AE_TITLE = r"^[ -\[\]-~]*[!-\[\]-~][ -\[\]-~]*$"
ANY_CLIENT = "*"


class _Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    clients: tuple[str, ...] = (ANY_CLIENT,)

    def serves(self, client: str | None) -> bool:
        return ANY_CLIENT in self.clients or (client is not None and client in self.clients)


class _HttpDestination(_Destination):
    """A service over HTTP(S), with its credentials kept in environment variables."""

    url: str = Field(pattern=r"^https?://[^\s]+$")
    username: str | None = None
    password_env: str | None = None  # HTTP Basic with ``username``
    token_env: str | None = None  # Authorization: Bearer
    ca_file: Path | None = None  # the server's CA, for HTTPS with a private one
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_credential(self) -> _HttpDestination:
        if self.token_env and (self.username or self.password_env):
            raise ValueError("give username/password_env or token_env, not both")
        if bool(self.username) != bool(self.password_env):
            raise ValueError("username and password_env go together")
        return self

    def secret(self, variable: str | None) -> str | None:
        """The value of the environment variable a credential is kept in."""
        if variable is None:
            return None
        value = os.environ.get(variable)
        if not value:
            raise ValueError(f"destination {self.name}: environment variable {variable} is"
                             " not set")
        return value


class StowDestination(_HttpDestination):
    """A DICOMweb STOW-RS service (a PACS's or a VNA's DICOMweb root)."""

    kind: Literal["stow-rs"]


class FhirDestination(_HttpDestination):
    """A FHIR R4 server (its base URL): each study's Bundle POSTed as a transaction."""

    kind: Literal["fhir"]


class CStoreDestination(_Destination):
    """A DICOM C-STORE SCP (a PACS's DIMSE port)."""

    kind: Literal["c-store"]
    ae_title: str = Field(min_length=1, max_length=16, pattern=AE_TITLE)
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    timeout_s: float = Field(default=60.0, gt=0)


AnyDestination = StowDestination | CStoreDestination | FhirDestination
Destination = Annotated[AnyDestination, Field(discriminator="kind")]
_FILE = TypeAdapter(dict[Literal["destination"], list[Destination]])


class Destinations:
    """The configured destinations, by name."""

    def __init__(self, destinations: list[AnyDestination]) -> None:
        self.by_name: Mapping[str, AnyDestination] = {
            d.name: d for d in destinations}
        if len(self.by_name) != len(destinations):
            raise ValueError("destination names must be unique")

    def for_client(self, client: str | None) -> list[str]:
        """The names of the destinations ``client``'s studies go to."""
        return [name for name, d in self.by_name.items() if d.serves(client)]


def load_destinations(path: Path | None) -> Destinations:
    """The destinations in ``path``; none when unset. ValueError says what is wrong."""
    if path is None:
        return Destinations([])
    try:
        text = tomllib.loads(path.read_text(encoding="utf-8"))
        destinations = _FILE.validate_python(text).get("destination", [])
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False))
        raise ValueError(f"{path}: {problems}") from None
    loaded = Destinations(destinations)
    for destination in destinations:
        if isinstance(destination, _HttpDestination):  # a missing secret fails at start
            destination.secret(destination.password_env)
            destination.secret(destination.token_env)
    return loaded

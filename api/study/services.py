"""The clients a running service holds, made once in the app's lifespan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.auth.keys import KeyStore
from api.auth.principal import LinkVerifier
from api.config import Settings
from api.errors import CallbackRefused
from api.inference.protocol import SegmentationModel
from api.study.jobs import JobStore
from api.study.runner import JobRunner
from api.study.storage import StudyStore

if TYPE_CHECKING:  # PyJWT and cryptography load only where OIDC is configured
    from api.auth.oidc import OidcVerifier


def no_callbacks(url: str, client: str | None) -> None:
    raise CallbackRefused("this service calls no callback URL (BONEMETS_WEBHOOKS is not set)")


@dataclass
class Services:
    """Everything a request reaches: settings, job rows, stored files, the model, the runner,
    and what checks credentials: API keys, the identity provider's tokens, signed links."""

    settings: Settings
    jobs: JobStore
    store: StudyStore
    model: SegmentationModel
    runner: JobRunner
    keys: KeyStore
    oidc: OidcVerifier | None = None  # when BONEMETS_OIDC_ISSUER is set
    links: LinkVerifier | None = None  # signed result links, for requests without a header
    # The destinations (api/delivery) a client's results are sent to, by client.
    deliver_to: Callable[[str | None], Sequence[str]] = lambda _: ()
    # check_callback(url, client): None, or CallbackRefused (422) for a callback URL the
    # client may not ask for (api/delivery/webhook_clients.py).
    check_callback: Callable[[str, str | None], None] = no_callbacks

"""A study's Bundle to a FHIR server: one transaction POSTed to its base URL (FHIR R4
RESTful API, 3.1.0.11 batch/transaction), through httpx."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import httpx

from api.delivery.destinations import FhirDestination
from api.delivery.failures import DeliveryFailed

FHIR_JSON = "application/fhir+json"
# Worth asking again, as for STOW-RS: what may be fixed on the other side (credentials, a
# permission, a route: 401, 403, 404), a timeout, or a request to slow down. Any other 4xx
# says the Bundle itself is refused, and sending it again cannot help.
RETRIED_CLIENT_ERRORS = {401, 403, 404, 408, 429}


def post_transaction(destination: FhirDestination, bundle: bytes) -> None:
    """POST ``bundle`` (a transaction) to ``destination``; DeliveryFailed unless it answers 2xx,
    permanent for a 4xx the Bundle itself is refused with (not 401, 403, 404, 408, 429)."""
    where = urlsplit(destination.url).netloc
    try:
        with _client(destination) as client:
            answer = client.post(destination.url.rstrip("/"), content=bundle)
    except httpx.HTTPError as exc:  # connection refused, timeouts, TLS
        raise DeliveryFailed(f"FHIR transaction to {where} failed: {type(exc).__name__}"
                             ) from None
    status = answer.status_code
    if 200 <= status < 300:
        return
    permanent = 400 <= status < 500 and status not in RETRIED_CLIENT_ERRORS
    raise DeliveryFailed(f"FHIR transaction to {where} answered HTTP {status}",
                         permanent=permanent)


def _client(destination: FhirDestination) -> httpx.Client:
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    auth = None
    token = destination.secret(destination.token_env)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if destination.username:
        auth = httpx.BasicAuth(destination.username,
                               destination.secret(destination.password_env) or "")
    verify: ssl.SSLContext | bool = True
    if destination.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(destination.ca_file))
    # No proxy or netrc from the environment: the destinations file says it all.
    return httpx.Client(headers=headers, auth=auth, verify=verify, trust_env=False,
                        timeout=destination.timeout_s)

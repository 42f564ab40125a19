"""SEG and SR to a DICOMweb service by STOW-RS (PS3.18 10.5), through dicomweb-client."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from api.delivery.destinations import StowDestination
from api.delivery.failures import DeliveryFailed

# dicomweb-client logs each request with its study UID: ours says what went where instead.
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)

# PS3.18 10.5.3: the request itself cannot be stored as sent; anything else (401, 403, 404,
# 5xx) may be fixed on the other side (a password, a route, a restart), so it is retried.
REFUSED_AS_SENT = {400: "a bad request", 409: "every instance refused",
                   413: "too large", 415: "an unsupported media type"}
OUT_OF_RESOURCES = 0xA700  # PS3.4 Annex GG (0xA7xx): the one failure reason worth a retry


def stow(destination: StowDestination, datasets: list[Dataset]) -> str | None:
    """Store ``datasets`` at ``destination``; a note when it stored them with warnings.
    DeliveryFailed when it did not store them all."""
    where = urlsplit(destination.url).netloc
    with _session(destination) as session:
        client = DICOMwebClient(destination.url, session=session, headers=_headers(destination),
                                timeout=destination.timeout_s)
        client.set_http_retry_params(retry=False)  # ours back off for minutes, not seconds
        try:
            answer = client.store_instances(datasets)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            reason = REFUSED_AS_SENT.get(status)
            raise DeliveryFailed(f"STOW-RS to {where} answered HTTP {status}"
                                 + (f" ({reason})" if reason else ""),
                                 permanent=reason is not None) from None
        except (requests.RequestException, OSError) as exc:
            raise DeliveryFailed(f"STOW-RS to {where} failed: {type(exc).__name__}") from None
    return _outcome(answer, where, len(datasets))


def _outcome(answer: Dataset, where: str, sent: int) -> str | None:
    """The Store Instances Response's failures raised, its warnings as a note."""
    failures = [int(item.get("FailureReason", 0xC000))
                for item in answer.get("FailedSOPSequence", [])]
    if failures:
        codes = ", ".join(f"0x{code:04X}" for code in sorted(set(failures)))
        raise DeliveryFailed(
            f"STOW-RS to {where} refused {len(failures)} of {sent} instances (failure reason"
            f" {codes})", permanent=any(code & 0xFF00 != OUT_OF_RESOURCES for code in failures))
    warnings = sorted({int(item.WarningReason) for item in answer.get("ReferencedSOPSequence", [])
                       if "WarningReason" in item})
    if warnings:
        return "stored with warning " + ", ".join(f"0x{code:04X}" for code in warnings)
    return None


def _session(destination: StowDestination) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy or netrc from the environment: the file says it all
    if destination.ca_file is not None:
        session.verify = str(destination.ca_file)
    if destination.username:
        password = destination.secret(destination.password_env) or ""
        session.auth = (destination.username, password)
    return session


def _headers(destination: StowDestination) -> dict[str, str]:
    token = destination.secret(destination.token_env)
    return {"Authorization": f"Bearer {token}"} if token else {}

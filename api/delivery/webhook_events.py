"""A job's end as a webhook event: its JSON, and the Standard Webhooks headers that sign it.

    {"type": "study.succeeded", "timestamp": "2026-12-07T20:31:02.120000Z",
     "data": {"id": "…", "state": "succeeded", "lesion_count": 2,
              "links": {"job": "/v1/studies/…", "seg": "…/seg.dcm", "sr": "…/sr.dcm",
                        "fhir": "…/fhir"},
              "metadata": {"accession_number": "…", "placer_order": "…"}}}

The same event gives the same bytes on every attempt; only ``webhook-timestamp`` (and so the
signature) is the attempt's. ``metadata`` is what the caller sent with the study, echoed back
for it to match the event to its order (not ``callback_url``); nothing is taken from the DICOM.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from api.study.jobs import Job
from api.study.webhooks import Webhook as Event

CONTENT_TYPE = "application/json"


def event_document(event: Event, job: Job, lesion_count: int | None,
                   public_url: str = "") -> dict[str, Any]:
    """The event of ``job``'s end; ``lesion_count`` from its result (None: not readable)."""
    base = f"{public_url.rstrip('/')}/v1/studies/{job.id}"
    data: dict[str, Any] = {"id": job.id, "state": job.state.value}
    links = {"job": base}
    if event.event_type == "study.succeeded":
        data["lesion_count"] = lesion_count
        if lesion_count:  # a study without lesions has no SEG
            links["seg"] = f"{base}/seg.dcm"
        links.update(sr=f"{base}/sr.dcm", fhir=f"{base}/fhir")
    elif job.error is not None:
        data["problem"] = {"type": job.error.type, "title": job.error.title,
                           "status": job.error.status}
    data["links"] = links
    data["metadata"] = job.metadata.model_dump(exclude_none=True, exclude={"callback_url"})
    when = datetime.fromtimestamp(event.since, UTC).isoformat(timespec="microseconds")
    return {"type": event.event_type, "timestamp": when.replace("+00:00", "Z"), "data": data}


def event_body(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def signed_headers(signer: Webhook, event_id: str, body: bytes, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt to send ``body``."""
    at = datetime.fromtimestamp(int(now), UTC)
    return {
        "content-type": CONTENT_TYPE,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signer.sign(event_id, at, body),
    }

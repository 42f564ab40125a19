"""The envelopes around a result: the job document, problems, health."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.errors import NotDicom
from api.schemas.result import StudyResult, example
from api.schemas.submission import SubmissionMetadata

PROGRESS: dict[str, Any] = {"slices_done": 48, "slices_total": 120}


class Progress(BaseModel):
    model_config = example(PROGRESS)

    slices_done: int
    slices_total: int = Field(description="slices of the chosen series, known from the upload")


class Problem(BaseModel):
    """An RFC 9457 problem details body."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": NotDicom.type_uri,
                "title": "Not a DICOM file",
                "status": 415,
                "detail": "report.pdf: no DICOM preamble or file meta",
                "instance": "/v1/studies",
            }
        }
    )

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


DELIVERY: dict[str, Any] = {
    "destination": "pacs-web", "state": "pending", "attempts": 2,
    "objects": ["seg.dcm", "sr.dcm"], "since": 1796394031.2, "last_attempt_at": 1796394061.9,
    "next_attempt_at": 1796394101.9, "delivered_at": None,
    "detail": "STOW-RS to pacs.example.org answered HTTP 503",
}


class Delivery(BaseModel):
    """Where the study's SEG and SR are being sent, and how far they got."""

    model_config = example(DELIVERY)

    destination: str = Field(description="the destination's name in the destinations file")
    state: Literal["pending", "delivered", "failed"] = Field(
        description="pending: not yet delivered, tried again at next_attempt_at; failed: given"
        " up (refused as sent, or still failing after delivery_give_up_h)")
    attempts: int
    objects: list[str] = Field(description="what the last attempt sent: seg.dcm, sr.dcm; fhir"
                               " (the Bundle, to a FHIR server)")
    since: float = Field(description="when this delivery began: the job's success, or a resend")
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    detail: str | None = Field(
        default=None, description="the last failure's reason; once delivered, a note (a SEG"
        " left out, a warning the destination gave)")


WEBHOOK: dict[str, Any] = {
    "event": "study.succeeded", "host": "ris.example.org", "state": "delivered",
    "attempts": 2, "last_status": 200, "since": 1796394031.2, "last_attempt_at": 1796394033.4,
    "next_attempt_at": None, "delivered_at": 1796394033.4,
    "detail": None,
}


class WebhookDelivery(BaseModel):
    """The signed event announcing the job's end, and how far it got."""

    model_config = example(WEBHOOK)

    event: Literal["study.succeeded", "study.failed"]
    host: str = Field(description="the callback URL's host (the URL itself is not shown)")
    state: Literal["pending", "delivered", "failed"] = Field(
        description="pending: tried again at next_attempt_at; failed: given up (410 Gone, a"
        " host off the allow-list, or still failing at the end of the retry time)")
    attempts: int
    last_status: int | None = Field(default=None,
                                    description="the receiver's last HTTP status")
    since: float = Field(description="when the job ended: the event's time")
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None
    delivered_at: float | None = None
    detail: str | None = Field(default=None, description="the last failure's reason")


class StudyJob(BaseModel):
    model_config = example({
        "id": "5b0c3f8e2a9d4c6fb1e07a3d9c2e4f10", "state": "running", "progress": PROGRESS,
        "created_at": 1796394000.0, "updated_at": 1796394012.5, "error": None, "result": None,
    })

    id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: Progress
    created_at: float
    updated_at: float
    # Defaults, so that the published example (FastAPI drops its nulls) is a valid body too;
    # the answer always carries both keys.
    priority: Literal["routine", "stat"] = Field(
        default="routine", description="stat studies are taken before routine ones waiting")
    metadata: SubmissionMetadata | None = Field(
        default=None, description="what the submission's `metadata` part gave, as given but"
        " for the callback URL's query (it may hold the caller's token)")
    error: Problem | None = Field(default=None, description="why the job failed, once it has")
    result: StudyResult | None = Field(default=None, description="present once it succeeded")
    viewer_url: str | None = Field(
        default=None, description="once it succeeded: the study in a browser, slice by slice"
        " with the lesion overlays (a signed link, like the result's `mask_url`)")
    deliveries: list[Delivery] = Field(
        default_factory=list, description="the SEG and SR sent to the configured destinations,"
        " once it succeeded; a delivery that fails never fails the job")
    webhooks: list[WebhookDelivery] = Field(
        default_factory=list, description="the event sent to the callback URL once the job"
        " ended (succeeded or failed); a receiver that fails never touches the job")


_JOB_ID = "5b0c3f8e2a9d4c6fb1e07a3d9c2e4f10"
_CURSOR = "MTc5NjM5NDAwMC4wLzViMGMzZjhlMmE5ZDRjNmZiMWUwN2EzZDljMmU0ZjEw"
STUDY_SUMMARY: dict[str, Any] = {
    "id": _JOB_ID, "state": "succeeded", "progress": {"slices_done": 120, "slices_total": 120},
    "created_at": 1796394000.0, "updated_at": 1796394031.2,
}


class StudySummary(BaseModel):
    """One study in a listing: its state, without the result."""

    model_config = example(STUDY_SUMMARY)

    id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: Progress
    created_at: float
    updated_at: float


class StudyList(BaseModel):
    """One page of the caller's studies, newest first."""

    model_config = example({
        "items": [STUDY_SUMMARY], "next_cursor": _CURSOR,
        "next": f"/v1/studies?limit=1&cursor={_CURSOR}",
    })

    items: list[StudySummary]
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page; null on the last page")
    next: str | None = Field(
        default=None, description="the next page's path and query; null on the last page")


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"status": "ok", "detail": None}})

    status: Literal["ok", "unavailable"]
    detail: str | None = None

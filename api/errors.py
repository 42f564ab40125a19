"""The one error tree of bonemets.

Domain code raises these; the HTTP layer maps each class to a status code and an
RFC 9457 problem+json body whose ``type`` is stable (``urn:bonemets:problem:<slug>``).
Every problem type the service answers with is a class here, including those of the HTTP
layer itself (a bad query, an unknown path) and of a job cut short by restarts. Nothing below
``api/http/routes`` raises ``HTTPException``.

    BoneMetsError                      500  internal
    ├── InvalidRequest                 422  invalid-request (a query or path parameter)
    ├── RouteNotFound                  404  not-found (no such path)
    ├── MethodNotAllowed               405  method-not-allowed
    ├── HTTPProblem                    4xx  http-error (any other refusal of the HTTP layer)
    ├── Unauthenticated                401  unauthenticated (WWW-Authenticate: Bearer)
    ├── Forbidden                      403  forbidden (a valid caller without the scope)
    ├── InvalidLink                    403  invalid-link (a signed link tampered with or expired)
    ├── RateLimited                    429  rate-limited (Retry-After)
    ├── InvalidUpload                  400  invalid-upload
    │   ├── InvalidMetadata            422  invalid-metadata (the upload's metadata part)
    │   ├── NotDicom                   415  not-dicom
    │   ├── MalformedDicom             422  malformed-dicom
    │   ├── NoPixelData                422  no-pixel-data
    │   ├── NotCT                      422  not-ct
    │   ├── NoCTSeries                 422  no-ct-series
    │   ├── InconsistentGeometry       422  inconsistent-geometry
    │   ├── ConflictingInstances       422  conflicting-instances
    │   ├── UnsupportedCompression     415  unsupported-compression
    │   ├── CorruptPixelData           422  corrupt-pixel-data
    │   ├── UnsupportedBodyPart        422  unsupported-body-part
    │   ├── UploadTooLarge             413  upload-too-large
    │   ├── ImageTooLarge              413  image-too-large (declared pixels past the bound)
    │   └── TooManySlices              413  too-many-slices
    ├── JobNotFound                    404  job-not-found
    ├── SliceNotFound                  404  slice-not-found
    ├── JobNotFinished                 409  job-not-finished
    ├── NoSegments                     404  no-segments (a study without lesions has no SEG)
    ├── SegmentationUnsupported        422  segmentation-unsupported (sources a SEG cannot hold)
    ├── IdempotencyKeyReused           409  idempotency-key-reused (the key, another request)
    ├── NoDestination                  409  no-destination (a resend with nowhere to send to)
    ├── CallbackRefused                422  callback-refused (a callback URL not allowed)
    ├── Interrupted                    503  interrupted (the service stopped during the job)
    ├── InferenceUnavailable           503  inference-unavailable (Retry-After)
    │   └── InferenceTimeout           504  inference-timeout
    ├── ModelError                     502  model-error
    ├── DecoderCrashed                 503  decoder-crashed
    └── StorageError                   500  storage-error
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "urn:bonemets:problem:"


class BoneMetsError(Exception):
    """Base of every error bonemets raises on purpose; also what an unexpected one reports."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    type_uri: ClassVar[str] = PROBLEM_TYPE_PREFIX + "internal"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_uri = PROBLEM_TYPE_PREFIX + cls.slug

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(BoneMetsError):
    status, slug, title = 422, "invalid-request", "Invalid request"


class RouteNotFound(BoneMetsError):
    status, slug, title = 404, "not-found", "Not Found"


class MethodNotAllowed(BoneMetsError):
    status, slug, title = 405, "method-not-allowed", "Method Not Allowed"


class HTTPProblem(BoneMetsError):
    """Any other status the HTTP layer refuses a request with; the answer keeps that status."""

    status, slug, title = 400, "http-error", "HTTP error"


class Unauthenticated(BoneMetsError):
    """No credentials, or credentials that prove nothing: a missing, unknown, revoked or
    expired key or token. Answered with ``WWW-Authenticate: Bearer``."""

    status, slug, title = 401, "unauthenticated", "Authentication required"


class Forbidden(BoneMetsError):
    """A caller we know, without the scope the route needs."""

    status, slug, title = 403, "forbidden", "Not allowed"


class InvalidLink(BoneMetsError):
    """A signed result link whose signature does not match, or whose time is up."""

    status, slug, title = 403, "invalid-link", "Invalid or expired link"


class RateLimited(BoneMetsError):
    """A client past its studies in flight or uploads per minute."""

    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class InvalidUpload(BoneMetsError):
    status, slug, title = 400, "invalid-upload", "Invalid upload"


class InvalidMetadata(InvalidUpload):
    """A ``metadata`` part that is not the JSON object the API documents."""

    status, slug, title = 422, "invalid-metadata", "Invalid submission metadata"


class NotDicom(InvalidUpload):
    status, slug, title = 415, "not-dicom", "Not a DICOM file"


class MalformedDicom(InvalidUpload):
    status, slug, title = 422, "malformed-dicom", "DICOM that breaks the encoding rules"


class NoPixelData(InvalidUpload):
    status, slug, title = 422, "no-pixel-data", "DICOM object without usable pixel data"


class NotCT(InvalidUpload):
    status, slug, title = 422, "not-ct", "Not a CT image"


class NoCTSeries(InvalidUpload):
    status, slug, title = 422, "no-ct-series", "No axial CT image series in the upload"


class InconsistentGeometry(InvalidUpload):
    status, slug, title = 422, "inconsistent-geometry", "Inconsistent series geometry"


class ConflictingInstances(InvalidUpload):
    """One SOP Instance UID on two different images: which one is meant cannot be known."""

    status, slug, title = 422, "conflicting-instances", "Two images share one SOP Instance UID"


class UnsupportedCompression(InvalidUpload):
    status, slug, title = 415, "unsupported-compression", "Unsupported transfer syntax"


class CorruptPixelData(InvalidUpload):
    status, slug, title = 422, "corrupt-pixel-data", "Pixel data cannot be decoded"


class UnsupportedBodyPart(InvalidUpload):
    status, slug, title = 422, "unsupported-body-part", "Body part not read by this model"


class UploadTooLarge(InvalidUpload):
    status, slug, title = 413, "upload-too-large", "Upload too large"


class ImageTooLarge(InvalidUpload):
    """An image whose declared Rows x Columns x frames (or a compressed frame's decoded size)
    passes the bound: refused before any pixel buffer is allocated."""

    status, slug, title = 413, "image-too-large", "Image too large"


class TooManySlices(InvalidUpload):
    status, slug, title = 413, "too-many-slices", "Too many slices"


class JobNotFound(BoneMetsError):
    status, slug, title = 404, "job-not-found", "Study job not found"


class SliceNotFound(BoneMetsError):
    status, slug, title = 404, "slice-not-found", "Slice not found"


class JobNotFinished(BoneMetsError):
    status, slug, title = 409, "job-not-finished", "Study job has no result yet"


class NoSegments(BoneMetsError):
    """A DICOM Segmentation holds at least one segment; a study without lesions has none."""

    status, slug, title = 404, "no-segments", "No lesion to segment"


class SegmentationUnsupported(BoneMetsError):
    """The study's findings cannot be written as one DICOM Segmentation (a series spread over
    several multi-frame instances: a SEG derives from one); the SR still holds them."""

    status, slug, title = 422, "segmentation-unsupported", "No Segmentation for this series"


class IdempotencyKeyReused(BoneMetsError):
    """An ``Idempotency-Key`` the client already sent with another study or other metadata."""

    status, slug, title = 409, "idempotency-key-reused", "Idempotency key used for another request"


class NoDestination(BoneMetsError):
    """No destination is configured for the study's client: there is nowhere to resend to."""

    status, slug, title = 409, "no-destination", "No destination for this study"


class CallbackRefused(BoneMetsError):
    """A callback URL the service will not call: its host is not on the allow-list, or the
    client has no webhook secret to sign with."""

    status, slug, title = 422, "callback-refused", "Callback URL refused"


class Interrupted(BoneMetsError):
    """The service stopped during the job as many times as a job is tried: it is not run again."""

    status, slug, title = 503, "interrupted", "Processing interrupted"


class InferenceUnavailable(BoneMetsError):
    status, slug, title = 503, "inference-unavailable", "Inference server unavailable"
    retry_after_s: ClassVar[int] = 10


class InferenceTimeout(InferenceUnavailable):
    status, slug, title = 504, "inference-timeout", "Inference timed out"


class ModelError(BoneMetsError):
    status, slug, title = 502, "model-error", "The model answered with something unusable"


class DecoderCrashed(BoneMetsError):
    """A decode worker died twice on the same batch (a file crashing a native decoder, or
    memory): the study fails with this reason; the service goes on with a fresh pool."""

    status, slug, title = 503, "decoder-crashed", "The image decoder stopped on this study"


class StorageError(BoneMetsError):
    status, slug, title = 500, "storage-error", "Storage error"

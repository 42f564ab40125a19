"""Settings, from ``BONEMETS_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from api.config.integration import IntegrationSettings
from api.config.observability import ObservabilitySettings
from api.dicom.bounds import DEFAULT_MAX_IMAGE_PIXELS
from api.dicom.headers import body_part_code
from api.inference.contract import MODEL_NAME, parse_windows

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# DICOM PS3.16 Annex L body parts outside the trunk that the model was never trained on:
# the head (its skull and diploe read as lesions to a spine model) and the limbs' ends.
DEFAULT_REFUSED_BODY_PARTS = (
    "HEAD,BRAIN,SKULL,HEADNECK,FACE,ORBIT,SINUS,IAC,JAW,TMJ,EAR,"
    "HAND,FINGER,WRIST,FOREARM,ELBOW,KNEE,LEG,ANKLE,FOOT,TOE,HEEL"
)
# Lesions under this longest axial diameter are not reported; the gateway's default and
# `bonemets evaluate`'s, so the card's figures are what is served (docs/MODEL_CARD.md).
DEFAULT_FLOOR_MM = 5.0


class Settings(IntegrationSettings, ObservabilitySettings):
    """Every knob of the gateway. Defaults run the local, CPU-only service; the ones of the
    systems around it (a PACS, an EHR, callers' webhooks) are in ``IntegrationSettings``."""

    # Errors never quote a value: some are secrets (key_pepper, link_keys, database_url).
    model_config = SettingsConfigDict(env_prefix="BONEMETS_", env_file=".env", extra="ignore",
                                      hide_input_in_errors=True)

    role: Literal["all", "api", "worker"] = Field(
        default="all", description="what this process does: all (one process, the default),"
        " api (uploads, reads, the DICOM listener; queues jobs) or worker (claims and runs"
        " jobs, sends results to the PACS, sweeps expired studies; serves /healthz and /readyz"
        " only); api and worker share BONEMETS_DATABASE_URL and BONEMETS_STORAGE_URL",
    )
    host: str = Field(default="127.0.0.1", description="address `bonemets serve` binds;"
                      " only this machine by default")
    port: int = Field(default=8000, ge=1, le=65535, description="port `bonemets serve` binds")
    triton_url: str | None = Field(
        default=None,
        description="host:port of external Triton gRPC endpoints, comma-separated, or a name"
        " resolving to several (a headless Service): requests go to the least busy healthy"
        " one; unset starts a local one",
    )
    triton_resolve_s: float = Field(
        default=30.0, gt=0, description="how often the names in triton_url are resolved again"
        " (Triton pods that come and go)",
    )
    model_name: str = Field(default=MODEL_NAME, description="Triton model to call")
    triton_shared_memory: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="send tensors through system shared memory; auto: when Triton is local",
    )
    model_repository: Path = Field(default=PROJECT_ROOT / "model_repository",
                                   description="model repository for the local Triton")
    triton_grpc_port: int = Field(default=8101, description="local Triton gRPC port")
    triton_http_port: int = Field(default=8100, description="local Triton HTTP port")
    triton_metrics_port: int = Field(default=8102, description="local Triton metrics port")
    window: str | None = Field(
        default=None,
        description="expected bone window 'LEVEL:WIDTH'; the model's own (recorded at export)"
        " is used, and /readyz fails when it differs from this",
    )
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="expected probability threshold; /readyz fails when the model's differs",
    )
    data_dir: Path = Field(default=Path("data"), description="results, masks and the job DB")
    database_url: str | None = Field(
        default=None, pattern=r"^postgres(ql)?://",
        description="the job database: a postgresql://user:password@host:port/name URL, one"
        " PostgreSQL shared by every API replica and worker; unset: SQLite, data_dir/jobs.sqlite",
    )
    key_pepper: SecretStr | None = Field(
        default=None,
        description="the secret API keys are hashed under, 64 hex digits (`openssl rand -hex"
        " 32`); required with database_url, the same on every replica; unset: a file beside"
        " data_dir/keys.sqlite",
    )
    job_lease_s: float = Field(
        default=30.0, gt=0, description="how long a worker's claim on a job lasts without a"
        " heartbeat; a job whose worker died is claimed by another after this",
    )
    job_heartbeat_s: float = Field(
        default=10.0, gt=0, description="how often a worker renews its claim on a running job"
        " (and notices the job was deleted by another process); below job_lease_s",
    )
    job_max_attempts: int = Field(
        default=3, ge=1, description="claims of one job (restarts, lost workers) before it"
        " fails as interrupted",
    )
    storage_url: str | None = Field(
        default=None,
        description="where uploads, results, masks and SEG/SR are kept: unset, under"
        " data_dir; `s3://bucket/prefix`, an S3-compatible bucket (endpoint, region and"
        " credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, ...)",
    )
    storage_part_mb: int = Field(
        default=16, ge=5, le=5120,
        description="with a bucket: files larger than this are sent as multipart uploads in"
        " parts of this size, MiB (S3's smallest part is 5)",
    )
    scratch_dir: Path | None = Field(
        default=None,
        description="with a bucket: the local folder where uploads are received and a job's"
        " files are fetched for its run, removed after; unset: data_dir/scratch",
    )
    max_upload_mb: int = Field(default=2048, gt=0, description="largest upload accepted, MB")
    max_slices: int = Field(default=2000, gt=0, description="most slices in one series")
    refused_body_parts: str = Field(
        default=DEFAULT_REFUSED_BODY_PARTS,
        description="BodyPartExamined values (comma-separated) whose series are refused with"
        " 422 unsupported-body-part; a series without the attribute is always read; empty:"
        " refuse none",
    )
    reporting_floor_mm: float = Field(
        default=DEFAULT_FLOOR_MM, ge=0.0, le=50.0,
        description="lesions whose longest axial diameter is below this many mm are not"
        " reported (a site setting; why 5: docs/MODEL_CARD.md); 0: every finding is reported",
    )
    batch_size: int = Field(default=8, ge=1, le=32, description="slices per Triton request")
    inflight_batches: int = Field(default=4, ge=1, description="Triton requests in flight per job")
    concurrent_jobs: int = Field(default=2, ge=1, description="studies processed at once")
    decode_workers: int = Field(default=2, ge=1, description="processes decoding DICOM")
    inference_timeout_s: float = Field(default=60.0, gt=0, description="per Triton request")
    inference_retries: int = Field(default=2, ge=0, description="retries of a failed request")
    job_retention_h: float = Field(default=168.0, gt=0, description="hours results are kept")
    idempotency_window_h: float = Field(
        default=24.0, gt=0, description="hours an Idempotency-Key answers with its job")
    public_url: str = Field(
        default="", description="base URL of the signed result links (mask, overlay) as clients"
        " reach the service, e.g. behind a proxy; empty: links are paths",
    )
    # Access control (docs/security.md).
    auth: Literal["on", "off"] = Field(
        default="on", description="off: no credentials asked (loopback binds only; warned)"
    )
    auth_open_paths: str = Field(
        default="/healthz,/readyz,/docs,/docs/,/redoc,/openapi.json",
        description="paths (comma-separated; a trailing / opens a prefix) open without"
        " credentials; every other route refuses an anonymous request",
    )
    oidc_issuer: str | None = Field(
        default=None, description="OIDC issuer URL; its discovery document names the JWKS"
    )
    oidc_audience: str | None = Field(default=None, description="the aud a token must carry")
    oidc_client_claim: str = Field(
        default="azp", description="claim naming the client; a token without it: client_id,"
        " then sub",
    )
    oidc_scopes_claim: str = Field(
        default="scope", description="claim holding the scopes: a space-separated string"
        " (scope) or a list (scp)",
    )
    link_keys: str | None = Field(
        default=None, description="secrets for signed result links, comma-separated: the first"
        " signs, all verify (rotation); unset: one generated in the data directory",
    )
    link_ttl_s: int = Field(default=3600, gt=0, description="how long a signed link is valid")
    audit_log: Path | None = Field(
        default=None, description="JSON lines, one per access; unset: <data_dir>/audit.log"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="the service log (stderr): text lines, or JSON lines with"
        " request_id, job_id and client (docs/operations.md)")
    client_max_inflight: int = Field(
        default=4, ge=1, description="a client's studies queued or running at once (429 above)")
    client_uploads_per_minute: int = Field(
        default=30, ge=1, description="a client's uploads per minute (429 above)")
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_IMAGE_PIXELS, gt=0,
        description="most pixels one DICOM file may declare (Rows x Columns x frames x"
        " samples), 413 above, before any pixel buffer is allocated; 2^32: twice a 2,000-frame"
        " 1024 x 1024 enhanced CT",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain): `bonemets serve` speaks HTTPS"
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of ssl_certfile (unless that file holds it)"
    )
    @field_validator("window")
    @classmethod
    def _window_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_windows(value)
        return value

    @field_validator("key_pepper")
    @classmethod
    def _pepper_is_hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value.get_secret_value()):
            raise ValueError("the key pepper is 64 hex digits (`openssl rand -hex 32`)")
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url_is_s3(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
                raise ValueError("storage_url must be s3://bucket or s3://bucket/prefix")
        return value or None

    @field_validator("link_keys")
    @classmethod
    def _link_keys_long(cls, value: str | None) -> str | None:
        # api.auth.links refuses them too; here the service stops at start, not at a request.
        keys = [key.strip() for key in (value or "").split(",") if key.strip()]
        if any(len(key) < 32 for key in keys):
            raise ValueError("every link key must be at least 32 characters")
        return value

    @model_validator(mode="after")
    def _ports_distinct(self) -> Settings:
        ports = {self.triton_grpc_port, self.triton_http_port, self.triton_metrics_port}
        if len(ports) != 3:
            raise ValueError("the local Triton's gRPC, HTTP and metrics ports must differ")
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.job_heartbeat_s >= self.job_lease_s:
            raise ValueError("job_heartbeat_s must be shorter than job_lease_s, or a lease runs"
                             " out between two heartbeats")
        return self

    @property
    def key_pepper_hex(self) -> str | None:
        """The key pepper's value, for the key store alone."""
        return self.key_pepper.get_secret_value() if self.key_pepper else None

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def refused_body_part_codes(self) -> frozenset[str]:
        """``refused_body_parts`` as the codes the DICOM reader compares against."""
        codes = (body_part_code(part) for part in self.refused_body_parts.split(","))
        return frozenset(code for code in codes if code)


@lru_cache
def get_settings() -> Settings:
    return Settings()

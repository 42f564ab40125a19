"""The settings of the systems around the gateway: DICOM in by DIMSE, results back to the
PACS and the EHR, webhooks to callers (docs/integration.md). ``Settings`` has them all."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class IntegrationSettings(BaseSettings):
    """DIMSE listener, destinations and delivery, FHIR, webhooks (``BONEMETS_*``, read by
    ``Settings``, whose configuration applies)."""

    # DICOM in by DIMSE (api/dimse/, docs/integration.md).
    dicom_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="port of the DICOM (DIMSE) listener, on `host`; unset: no listener",
    )
    ae_title: str = Field(
        # PS3.5 6.2: up to 16 printable characters but the backslash, not only spaces.
        default="BONEMETS", min_length=1, max_length=16,
        pattern=r"^[ -\[\]-~]*[!-\[\]-~][ -\[\]-~]*$",
        description="the listener's own AE title (called AE title a PACS sends to)",
    )
    dicom_calling_aes: str = Field(
        default="", description="calling AE titles allowed to associate (comma-separated);"
        " empty: any; another is rejected at association (calling AE title not recognised)",
    )
    dicom_quiet_s: float = Field(
        default=10.0, gt=0, description="a study received by C-STORE is queued as one job when"
        " no instance of it has arrived for this many seconds",
    )
    dicom_client: str = Field(
        default="dimse", pattern=r"^([A-Za-z0-9._@-]|\{calling_ae\})+$",
        description="client that owns the studies the listener receives; `{calling_ae}` is"
        " replaced by the sender's AE title (characters outside A-Z a-z 0-9 . _ @ - as _)",
    )

    # Results back to the PACS (api/delivery/, docs/integration.md).
    destinations: Path | None = Field(
        default=None, description="TOML file of the DICOMweb (STOW-RS) and DICOM (C-STORE)"
        " destinations each finished study's SEG and SR are sent to; unset: none",
    )
    delivery_backoff_s: float = Field(
        default=10.0, gt=0, description="wait before a failed delivery's second attempt;"
        " it doubles with each further failure",
    )
    delivery_backoff_max_s: float = Field(
        default=600.0, gt=0, description="longest wait between two attempts of a delivery",
    )
    delivery_give_up_h: float = Field(
        default=24.0, gt=0, description="hours after a job's success a failing delivery is"
        " tried for, then marked failed (a resend starts it again)",
    )
    delivery_concurrency: int = Field(default=2, ge=1, description="deliveries sent at once")

    fhir_report_status: Literal["preliminary", "final"] = Field(default="preliminary",
        description="FHIR report status: preliminary (a radiologist confirms it) or final")
    webhooks: Path | None = Field(default=None, description="TOML file of the clients that"
                                  " may be called back when a job ends: secrets, default URLs")
    webhook_allow: str = Field(
        default="", description="hosts callback URLs may name, comma-separated: names,"
        " `*.domain`, networks (10.0.0.0/8); empty: no callbacks (docs/integration.md)")

    @property
    def dicom_calling_ae_titles(self) -> frozenset[str]:
        """``dicom_calling_aes`` as titles (empty: any caller)."""
        return frozenset(ae.strip() for ae in self.dicom_calling_aes.split(",") if ae.strip())

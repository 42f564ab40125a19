"""What a caller may send with a study besides its images: the ids its own systems know the
order by, the EHR references a FHIR result should point at, and where to be told it is done.

The service never invents patient identities: ``subject`` and ``encounter`` are the caller's
own FHIR references, copied into the Bundle as given. All of it is patient data: stored with
the job, deleted with it, and never written to a log.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A FHIR reference as an integration engine writes one: relative (``Patient/123``) or an
# absolute URL on its FHIR server.
REFERENCE = r"^([A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}|https?://\S{1,1024})$"
# FHIR's ``string`` without control characters; DICOM's AccessionNumber is SH (16), but an
# order id from an EHR may be longer.
TEXT = r"^[^\x00-\x1f\x7f]{1,64}$"

METADATA: dict[str, Any] = {
    "accession_number": "A20261207-0042",
    "accession_system": "urn:oid:1.2.840.99999.1.2",
    "placer_order": "ORD-99817",
    "subject": "Patient/8734",
    "encounter": "Encounter/551",
    "service_request": "ServiceRequest/ct-spine-42",
    "callback_url": "https://ris.example.org/bonemets/events",
}


class SubmissionMetadata(BaseModel):
    """The caller's own ids and references for a study, carried into its FHIR Bundle and
    webhook events as given."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              json_schema_extra={"example": METADATA})

    accession_number: str | None = Field(
        default=None, pattern=TEXT, description="the order's accession number (RIS)")
    accession_system: str | None = Field(
        default=None, max_length=256, pattern=r"^(urn:|https?://)\S+$",
        description="the namespace of accession_number, as a FHIR identifier system")
    placer_order: str | None = Field(
        default=None, pattern=TEXT, description="the ordering system's id for the order")
    subject: str | None = Field(
        default=None, pattern=REFERENCE,
        description="FHIR reference to the patient (Patient/…): the Bundle's subject")
    encounter: str | None = Field(
        default=None, pattern=REFERENCE, description="FHIR reference to the encounter")
    service_request: str | None = Field(
        default=None, pattern=REFERENCE,
        description="FHIR reference to the order (ServiceRequest/…): the report's basedOn")
    callback_url: str | None = Field(
        default=None, max_length=2048, pattern=r"^https?://\S+$",
        description="where to POST the signed event when the job ends (instead of the"
        " client's default); its host must be on the webhook allow-list")

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_none=True)


NO_METADATA = SubmissionMetadata()

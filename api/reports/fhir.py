"""A finished study as a FHIR R4 Bundle: a DiagnosticReport, one Observation per lesion, and
the algorithm as a Device.

Built as FHIR R4B (4.3.0) and validated with ``fhir.resources.R4B``: fhir.resources 7 and
later give R5 at their top level and R4B and STU3 beside it, and no 4.0.1 at all (its last
R4 releases, 6.x, need pydantic 1). R4B changed none of the elements used here from R4
(4.0.1), so an R4 server takes the Bundle as it is.

Inside the Bundle, resources reference each other by urn:uuid fullUrls derived from the job
id (the same study gives the same Bundle; a transaction's entries point at each other before
the server names them). Outside it, references are logical: the CT study, the SEG and the SR
by their DICOM UIDs; the patient, encounter and order exactly as the caller gave them, and
absent when it gave none: the service never invents a patient identity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from fhir.resources.R4B.bundle import Bundle
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from api.reports import codes
from api.reports.codes import ALGORITHM_NAME, MANUFACTURER
from api.reports.uids import report_uid, resource_urn, tracking_uid
from api.schemas import Lesion, StudyResult
from api.schemas.submission import SubmissionMetadata

ReportStatus = Literal["preliminary", "final"]

SYSTEMS = {"SCT": "http://snomed.info/sct", "LN": "http://loinc.org",
           "DCM": "http://dicom.nema.org/resources/ontology/DCM",
           "UCUM": "http://unitsofmeasure.org"}
DICOM_UID = "urn:dicom:uid"  # FHIR's identifier system for a DICOM UID (urn:oid:<uid>)
# The project has no web domain; its URIs are urn:bonemets:* (the problem types too), so the
# code it coins for its own report is there. No LOINC or SNOMED CT concept names an AI read
# for bone metastases; the LOINC code beside it names the exam the report is about.
LOCAL_CODES = "urn:bonemets:fhir:codes"
REPORT_CODE = {"system": LOCAL_CODES, "code": "bone-metastasis-ai",
               "display": "AI bone metastasis detection"}
# HL7 v2 table 0074 is R4's own binding for DiagnosticReport.category (every R4 validator
# knows it); LOINC LP29684-5 is the same section as US Core's category value set wants it.
RADIOLOGY = {"coding": [
    {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
     "display": "Radiology"},
    {"system": "http://loinc.org", "code": "LP29684-5", "display": "Radiology"}]}
IMAGING = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                       "code": "imaging", "display": "Imaging"}]}
ACCESSION = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                         "code": "ACSN", "display": "Accession ID"}]}


@dataclass(frozen=True)
class ReportFacts:
    """What the Bundle says beside the result: the report's status, when the study was made
    (a FHIR dateTime: the study's, else the job's), when the job ended, and whether the job
    has a SEG to derive lesions from (it has lesions, and its series fits a SEG)."""

    status: ReportStatus
    effective: str
    issued: datetime
    with_seg: bool


def build_bundle(job_id: str, result: StudyResult, metadata: SubmissionMetadata,
                 facts: ReportFacts, transaction: bool = False) -> Bundle:
    """The study's Bundle: a ``collection`` to read, or a ``transaction`` to POST to a FHIR
    server (each entry created unless one with its identifier exists: a retried POST
    creates nothing twice)."""
    lesions = sorted(result.lesions, key=lambda lesion: lesion.id)
    device = (resource_urn(job_id, "device"), _device(result))
    observations = [(resource_urn(job_id, f"lesion-{lesion.id}"),
                     _observation(job_id, lesion, metadata, facts, device[0]))
                    for lesion in lesions]
    report = (resource_urn(job_id, "report"),
              _report(job_id, result, metadata, facts, [url for url, _ in observations]))
    entries = [_entry(url, resource, transaction) for url, resource in
               [report, *observations, device]]
    return Bundle.model_validate({
        "resourceType": "Bundle", "type": "transaction" if transaction else "collection",
        "timestamp": _instant(facts.issued), "entry": entries})


def conclusion(result: StudyResult) -> str:
    """The finding in plain words: how many lesions, and the largest's diameter."""
    if not result.lesions:
        return "No suspected bone metastasis."
    largest = max(lesion.longest_axial_diameter_mm for lesion in result.lesions)
    if len(result.lesions) == 1:
        return f"1 suspected bone metastasis, {largest:.0f} mm."
    return f"{len(result.lesions)} suspected bone metastases, largest {largest:.0f} mm."


def study_datetime(header: Dataset) -> str | None:
    """The study's date (and time, where its zone is known) as a FHIR dateTime, from a
    source header; None without a valid StudyDate. FHIR requires a zone with a time, and a
    DICOM time is local unless TimezoneOffsetFromUTC says otherwise, so without one only
    the date is given."""
    found = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", str(header.get("StudyDate") or "").strip())
    if found is None:
        return None
    try:
        day = date(*(int(part) for part in found.groups()))
    except ValueError:
        return None
    clock = re.fullmatch(r"(\d{2})(\d{2})(\d{2})?(?:\.\d*)?",
                         str(header.get("StudyTime") or "").strip())
    zone = re.fullmatch(r"([+-])(\d{2})(\d{2})",
                        str(header.get("TimezoneOffsetFromUTC") or "").strip())
    if clock is None or zone is None:
        return day.isoformat()
    hours, minutes, seconds = clock.group(1), clock.group(2), clock.group(3) or "00"
    if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 59:
        return day.isoformat()
    return f"{day.isoformat()}T{hours}:{minutes}:{seconds}{zone[1]}{zone[2]}:{zone[3]}"


def _report(job_id: str, result: StudyResult, metadata: SubmissionMetadata, facts: ReportFacts,
            observations: list[str]) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = [_uid(report_uid(job_id, "fhir-report"))]
    if metadata.accession_number:
        identifiers.append({"type": ACCESSION, "value": metadata.accession_number}
                           | ({"system": metadata.accession_system}
                              if metadata.accession_system else {}))
    # R4's DiagnosticReport.performer takes people and organisations only: the algorithm
    # is each Observation's device.
    return {
        "resourceType": "DiagnosticReport", "identifier": identifiers,
        **_order(metadata), "status": facts.status, "category": [RADIOLOGY],
        "code": {"coding": [REPORT_CODE, _coding(codes.PROCEDURE)],
                 "text": "AI bone metastasis detection, CT"},
        **_context(metadata, facts),
        "imagingStudy": [{"type": "ImagingStudy",
                          "identifier": _uid(result.study_instance_uid),
                          "display": "the CT study analysed"}],
        "result": [{"reference": url} for url in observations],
        "conclusion": conclusion(result),
    }


def _observation(job_id: str, lesion: Lesion, metadata: SubmissionMetadata,
                 facts: ReportFacts, device: str) -> dict[str, Any]:
    derived = [_instance("sr", job_id, "the DICOM SR (TID 1500) of the findings")]
    if facts.with_seg:
        derived.append(_instance("seg", job_id, f"the DICOM SEG, segment {lesion.id}"))
    return {
        "resourceType": "Observation",
        # The lesion's tracking UID: its SEG segment and SR measurement group carry it too.
        "identifier": [_uid(tracking_uid(job_id, lesion.id))],
        **_order(metadata), "status": facts.status, "category": [IMAGING],
        "code": {"coding": [_coding(codes.FINDING)],
                 "text": f"Suspected bone metastasis, lesion {lesion.id}"},
        **_context(metadata, facts),
        "bodySite": {"coding": [_coding(codes.SITES[lesion.site])]},
        "device": {"reference": device},
        "derivedFrom": derived,
        "component": [
            _quantity(codes.VOLUME, "Volume", lesion.volume_ml, codes.MILLILITRE),
            _quantity(codes.LONG_AXIS, "Longest axial diameter",
                      lesion.longest_axial_diameter_mm, codes.MILLIMETRE),
            _quantity(codes.PROBABILITY, "Probability, highest over the lesion",
                      lesion.probability_max, codes.NO_UNITS),
        ],
    }


def _device(result: StudyResult) -> dict[str, Any]:
    model = result.model
    return {
        "resourceType": "Device",
        # One identity per served model and version, so a server keeps one Device for each.
        "identifier": [_uid(report_uid("bonemets", f"device/{model.name}/{model.version}"))],
        "manufacturer": MANUFACTURER,
        "deviceName": [{"name": ALGORITHM_NAME, "type": "manufacturer-name"},
                       {"name": model.name, "type": "model-name"}],
        "type": {"coding": [_coding(codes.ALGORITHM_FAMILY)]},
        "version": [{"value": model.version}],
    }


def _entry(url: str, resource: dict[str, Any], transaction: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": url, "resource": resource}
    if transaction:
        identifier = resource["identifier"][0]
        entry["request"] = {"method": "POST", "url": resource["resourceType"],
                            "ifNoneExist": f"identifier={identifier['system']}"
                                           f"|{identifier['value']}"}
    return entry


def _order(metadata: SubmissionMetadata) -> dict[str, Any]:
    return ({"basedOn": [{"reference": metadata.service_request}]}
            if metadata.service_request else {})


def _context(metadata: SubmissionMetadata, facts: ReportFacts) -> dict[str, Any]:
    """Subject and encounter as the caller gave them, then the times."""
    given = {"subject": metadata.subject, "encounter": metadata.encounter}
    return {**{key: {"reference": value} for key, value in given.items() if value},
            "effectiveDateTime": facts.effective, "issued": _instant(facts.issued)}


def _instance(part: str, job_id: str, display: str) -> dict[str, Any]:
    # R4 has no resource for one DICOM instance (R5's ImagingSelection); a DocumentReference
    # is how R4 (and IHE MHD) index a DICOM object, here by its SOP Instance UID.
    return {"type": "DocumentReference", "identifier": _uid(report_uid(job_id, part)),
            "display": display}


def _quantity(code: Code, text: str, value: float, unit: Code) -> dict[str, Any]:
    return {"code": {"coding": [_coding(code)], "text": text},
            "valueQuantity": {"value": value, "unit": unit.value, "system": SYSTEMS["UCUM"],
                              "code": unit.value}}


def _coding(code: Code) -> dict[str, str]:
    return {"system": SYSTEMS[code.scheme_designator], "code": code.value,
            "display": code.meaning}


def _uid(uid: str) -> dict[str, str]:
    return {"system": DICOM_UID, "value": f"urn:oid:{uid}"}


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

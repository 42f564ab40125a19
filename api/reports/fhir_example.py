"""The FHIR Bundle example that the OpenAPI document and docs/integration.md show, made by
the same code as every Bundle: ``python -m api.reports.fhir_example`` prints it, and a test
keeps the docs equal to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from api.reports.fhir import ReportFacts, build_bundle
from api.schemas import StudyResult
from api.schemas.result import LESION, RESULT
from api.schemas.submission import SubmissionMetadata

JOB_ID = "5b0c3f8e2a9d4c6fb1e07a3d9c2e4f10"
SECOND_LESION = {**LESION, "id": 2, "volume_ml": 0.42, "longest_axial_diameter_mm": 9.6,
                 "probability_max": 0.74, "probability_mean": 0.61, "voxels": 528}
FACTS = ReportFacts(status="preliminary", effective="2026-12-07",
                    issued=datetime(2026, 12, 7, 9, 41, 12, tzinfo=UTC), with_seg=True)
# The references a caller's integration engine sends with the study (its metadata part).
METADATA = SubmissionMetadata(
    accession_number="A20261207-0042", accession_system="urn:oid:1.2.840.99999.1.2",
    subject="Patient/8734", encounter="Encounter/551",
    service_request="ServiceRequest/ct-spine-42")


def example_bundle(transaction: bool = False) -> dict[str, Any]:
    """A study with two lesions and every reference a caller can give, as JSON."""
    result = StudyResult.model_validate({**RESULT, "lesions": [LESION, SECOND_LESION]})
    bundle = build_bundle(JOB_ID, result, METADATA, FACTS, transaction=transaction)
    parsed: dict[str, Any] = json.loads(bundle.model_dump_json())
    return parsed


def example_text() -> str:
    """The example as docs/integration.md shows it."""
    return json.dumps(example_bundle(), indent=2) + "\n"


if __name__ == "__main__":
    print(example_text(), end="")

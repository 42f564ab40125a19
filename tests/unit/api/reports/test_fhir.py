"""The FHIR Bundle of a study: R4 resources whose values are the result's, references only
where the caller gave them, and the example the docs show equal to what the code makes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import __fhir_version__ as fhir_version
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError
from pydicom.dataset import Dataset

from api.reports.fhir import ReportFacts, build_bundle, conclusion, study_datetime
from api.reports.fhir_example import example_text
from api.reports.uids import report_uid, tracking_uid
from api.schemas import StudyResult
from api.schemas.result import LESION, RESULT
from api.schemas.submission import METADATA, NO_METADATA, SubmissionMetadata

DOCS = Path(__file__).resolve().parents[4] / "docs" / "integration.md"
FACTS = ReportFacts(status="preliminary", effective="2026-03-02",
                    issued=datetime(2026, 3, 2, 8, 0, 5, tzinfo=UTC), with_seg=True)


def study(*diameters: float) -> StudyResult:
    lesions = [{**LESION, "id": k, "longest_axial_diameter_mm": mm,
                "volume_ml": round(0.3 * k, 2), "probability_max": 0.5 + k / 10}
               for k, mm in enumerate(diameters, start=1)]
    return StudyResult.model_validate({**RESULT, "lesions": lesions})


def resources(bundle: Bundle, kind: str) -> list[Any]:
    return [entry.resource for entry in bundle.entry or []
            if entry.resource.get_resource_type() == kind]


def test_the_resources_are_fhir_r4b() -> None:
    assert fhir_version == "4.3.0"


@pytest.mark.parametrize(("diameters", "text"), [
    ((), "No suspected bone metastasis."),
    ((17.2,), "1 suspected bone metastasis, 17 mm."),
    ((9.6, 17.2), "2 suspected bone metastases, largest 17 mm."),
])
def test_the_conclusion_says_how_many_and_how_large(diameters: tuple[float, ...],
                                                     text: str) -> None:
    result = study(*diameters)
    assert conclusion(result) == text
    [report] = resources(build_bundle("j", result, NO_METADATA, FACTS), "DiagnosticReport")
    assert report.conclusion == text
    assert len(report.result or []) == len(diameters)


def test_each_lesion_is_an_observation_with_the_result_s_values() -> None:
    result = study(9.6, 17.2, 4.0)
    bundle = build_bundle("job-1", result, NO_METADATA, FACTS)
    observations = resources(bundle, "Observation")
    assert len(observations) == 3
    urls = {entry.fullUrl for entry in bundle.entry
            if entry.resource.get_resource_type() == "Observation"}
    [report] = resources(bundle, "DiagnosticReport")
    assert {ref.reference for ref in report.result} == urls
    [device] = resources(bundle, "Device")
    assert [v.value for v in device.version] == [result.model.version]
    for lesion, observation in zip(result.lesions, observations, strict=True):
        values = {c.code.coding[0].code: (float(c.valueQuantity.value), c.valueQuantity.code)
                  for c in observation.component}
        assert values == {"118565006": (lesion.volume_ml, "mL"),
                          "103339001": (lesion.longest_axial_diameter_mm, "mm"),
                          "122157": (lesion.probability_max, "1")}
        assert observation.code.coding[0].system == "http://snomed.info/sct"
        assert observation.code.coding[0].code == "14799000"
        assert observation.identifier[0].value == f"urn:oid:{tracking_uid('job-1', lesion.id)}"
        assert [ref.identifier.value for ref in observation.derivedFrom] == [
            f"urn:oid:{report_uid('job-1', 'sr')}", f"urn:oid:{report_uid('job-1', 'seg')}"]
        assert observation.device.reference == bundle.entry[-1].fullUrl


def test_no_seg_is_referenced_where_none_was_made() -> None:
    facts = ReportFacts(**{**FACTS.__dict__, "with_seg": False})
    [observation] = resources(build_bundle("j", study(5.0), NO_METADATA, facts), "Observation")
    assert [ref.identifier.value for ref in observation.derivedFrom] == [
        f"urn:oid:{report_uid('j', 'sr')}"]


def _references(bundle: dict[str, Any]) -> dict[str, set[str]]:
    """Per resource type, the metadata-borne keys it has."""
    return {entry["resource"]["resourceType"]: {
        key for key in ("subject", "encounter", "basedOn") if key in entry["resource"]}
        for entry in bundle["entry"]}


def test_the_caller_s_references_appear_exactly_when_given() -> None:
    given = SubmissionMetadata.model_validate(METADATA)
    bundle = json.loads(build_bundle("j", study(5.0), given, FACTS).model_dump_json())
    assert _references(bundle) == {"DiagnosticReport": {"subject", "encounter", "basedOn"},
                                   "Observation": {"subject", "encounter", "basedOn"},
                                   "Device": set()}
    report = bundle["entry"][0]["resource"]
    assert report["subject"] == {"reference": "Patient/8734"}
    assert report["encounter"] == {"reference": "Encounter/551"}
    assert report["basedOn"] == [{"reference": "ServiceRequest/ct-spine-42"}]
    assert report["identifier"][1] == {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "ACSN", "display": "Accession ID"}]},
        "system": "urn:oid:1.2.840.99999.1.2", "value": "A20261207-0042"}
    only_subject = SubmissionMetadata(subject="Patient/1", accession_number="A1")
    bundle = json.loads(build_bundle("j", study(5.0), only_subject, FACTS).model_dump_json())
    assert _references(bundle)["DiagnosticReport"] == {"subject"}
    assert "system" not in bundle["entry"][0]["resource"]["identifier"][1]
    bare = json.loads(build_bundle("j", study(5.0), NO_METADATA, FACTS).model_dump_json())
    assert _references(bare) == {"DiagnosticReport": set(), "Observation": set(),
                                 "Device": set()}
    assert len(bare["entry"][0]["resource"]["identifier"]) == 1  # no accession
    assert "Patient" not in json.dumps(bare)


def test_a_final_report_when_configured() -> None:
    facts = ReportFacts(**{**FACTS.__dict__, "status": "final"})
    bundle = build_bundle("j", study(5.0), NO_METADATA, facts)
    assert {entry.resource.status for entry in bundle.entry
            if entry.resource.get_resource_type() != "Device"} == {"final"}


def test_a_transaction_posts_each_entry_once() -> None:
    bundle = build_bundle("j", study(5.0, 6.0), NO_METADATA, FACTS, transaction=True)
    assert bundle.type == "transaction"
    for entry in bundle.entry:
        assert entry.fullUrl.startswith("urn:uuid:")
        assert entry.request.method == "POST"
        assert entry.request.url == entry.resource.get_resource_type()
        identifier = entry.resource.identifier[0]
        assert entry.request.ifNoneExist == f"identifier={identifier.system}|{identifier.value}"
    collection = build_bundle("j", study(5.0, 6.0), NO_METADATA, FACTS)
    assert collection.type == "collection"
    assert all(entry.request is None for entry in collection.entry)
    # The same study gives the same Bundle: a retried POST finds what the first one made.
    again = build_bundle("j", study(5.0, 6.0), NO_METADATA, FACTS, transaction=True)
    assert again.model_dump_json() == bundle.model_dump_json()


def test_an_invalid_resource_inside_the_bundle_is_refused() -> None:
    bundle = json.loads(build_bundle("j", study(5.0), NO_METADATA, FACTS).model_dump_json())
    bundle["entry"][1]["resource"]["component"][0]["valueQuantity"]["value"] = "large"
    with pytest.raises(ValidationError):
        Bundle.model_validate(bundle)


def _header(**values: str) -> Dataset:
    header = Dataset()
    for keyword, value in values.items():
        setattr(header, keyword, value)
    return header


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
@pytest.mark.parametrize(("values", "expected"), [
    ({"StudyDate": "20260302", "StudyTime": "081530.25", "TimezoneOffsetFromUTC": "+0100"},
     "2026-03-02T08:15:30+01:00"),
    ({"StudyDate": "20260302", "StudyTime": "0815", "TimezoneOffsetFromUTC": "-0500"},
     "2026-03-02T08:15:00-05:00"),
    ({"StudyDate": "20260302", "StudyTime": "081530"}, "2026-03-02"),  # local: no zone known
    ({"StudyDate": "20260302"}, "2026-03-02"),
    ({"StudyDate": "20261332"}, None),
    ({"StudyDate": ""}, None),
    ({}, None),
])
def test_the_study_s_date_as_a_fhir_date_time(values: dict[str, str],
                                               expected: str | None) -> None:
    assert study_datetime(_header(**values)) == expected


def test_the_docs_show_the_bundle_the_code_makes() -> None:
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- fhir-example: python -m api.reports.fhir_example -->\n"
                      r"```json\n(.*?)```", text, re.DOTALL)
    assert found is not None, "docs/integration.md lost its FHIR example"
    assert found.group(1) == example_text(), (
        "the FHIR example in docs/integration.md is stale: paste the output of"
        " `python -m api.reports.fhir_example`")


@pytest.mark.parametrize(("site", "code"), [
    ("vertebral_body", "51282000"), ("posterior_elements", "40265002"), ("rib", "113197003"),
    ("other_bone", "272673000"), ("unknown", "272673000")])
def test_each_observation_s_body_site_is_its_lesion_s_site(site: str, code: str) -> None:
    result = StudyResult.model_validate({**RESULT, "lesions": [{**LESION, "site": site}]})
    [observation] = resources(build_bundle("j", result, NO_METADATA, FACTS), "Observation")
    assert [(c.system, c.code) for c in observation.bodySite.coding] == [
        ("http://snomed.info/sct", code)]

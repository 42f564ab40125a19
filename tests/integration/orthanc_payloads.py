"""What the Orthanc fixture's tests send and receive: a small SEG and SR made with highdicom
(the SOP classes bonemets sends back to the PACS), and the parts of a STOW-RS body."""

from __future__ import annotations

import copy
import email.parser
import email.policy
import io
from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from api.reports.sources import COPIED_TYPE_2


def with_type_2(sources: Sequence[Dataset]) -> list[Dataset]:
    """Copies of ``sources`` with the Type 2 patient and study attributes highdicom copies
    (empty where the phantom has none)."""
    filled = [copy.deepcopy(ds) for ds in sources]
    for ds in filled:
        for keyword in COPIED_TYPE_2:
            if keyword not in ds:
                setattr(ds, keyword, None)
    return filled


def small_seg(sources: Sequence[Dataset]) -> hd.seg.Segmentation:
    """A binary SEG with one segment, a block on the first source image."""
    sources = with_type_2(sources)
    mask = np.zeros((len(sources), int(sources[0].Rows), int(sources[0].Columns)), dtype=bool)
    mask[0, 10:20, 10:20] = True
    algorithm = hd.AlgorithmIdentificationSequence(
        name="bonemets-test", version="0", family=codes.cid7162.ArtificialIntelligence)
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Lesion 1",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=90,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="bonemets tests",
        manufacturer_model_name="bonemets-test", software_versions="0",
        device_serial_number="0")


def small_sr(sources: Sequence[Dataset]) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 measurement report that says "no metastasis", on the sources' study."""
    sources = with_type_2(sources)
    absent = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="No finding"),
        finding_type=codes.SCT.NeoplasmMetastatic,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(codes.SCT.NeoplasmMetastatic, codes.SCT.Absent)])
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=[absent])
    return hd.sr.Comprehensive3DSR(
        evidence=sources, content=report, series_instance_uid=hd.UID(), series_number=91,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="bonemets tests")


def dicom_bytes(ds: Dataset) -> bytes:
    """``ds`` as a DICOM file (preamble, file meta), as STOW-RS sends each instance."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart_parts(content_type: str, body: bytes) -> list[Dataset]:
    """The DICOM instances of a ``multipart/related`` body, each part read by pydicom."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts: list[Dataset] = []
    for part in message.iter_parts():
        assert part.get_content_type() == "application/dicom", part.get_content_type()
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append(pydicom.dcmread(io.BytesIO(payload)))
    return parts


def stow_answer(stored: list[Dataset], failed: list[Dataset]) -> dict[str, Any]:
    """A STOW-RS answer (DICOM JSON, PS3.18 10.5.3): Orthanc's client wants one
    ReferencedSOPSequence item per instance it sent, and no FailedSOPSequence items."""
    answer = {"00081199": {"vr": "SQ", "Value": [_reference(ds) for ds in stored]}}
    if failed:  # 0xA700, out of resources: any failure reason will do here
        answer["00081198"] = {"vr": "SQ", "Value": [
            {**_reference(ds), "00081197": {"vr": "US", "Value": [0xA700]}} for ds in failed]}
    return answer


def _reference(ds: Dataset) -> dict[str, Any]:
    return {"00081150": {"vr": "UI", "Value": [str(ds.SOPClassUID)]},
            "00081155": {"vr": "UI", "Value": [str(ds.SOPInstanceUID)]}}

"""A study's findings as a Comprehensive 3D SR holding a TID 1500 Measurement Report.

One Planar ROI group (TID 1410) per lesion. Its region is a SCOORD POLYLINE, the lesion's
closed outline on its largest slice, on that slice's source image: what a viewer (OHIF) draws
and where the axial diameter is read. TID 1410 and 1411 take one region representation
each, so the 3D region, the SEG segment, is the source of the volume measurement instead (TID
300 INFERRED FROM an IMAGE reference with its segment number); the group's tracking UID is
the segment's too. The SEG's UIDs derive from the job id, so no SEG is built for the SR.
A study without lesions gets one TID 1501 group saying metastatic neoplasm is absent.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as sr_codes
from pydicom.uid import SegmentationStorage

from api.reports import codes
from api.reports.codes import ALGORITHM_NAME, MANUFACTURER
from api.reports.outline import Outline
from api.reports.sources import SourceImages
from api.reports.uids import report_uid, tracking_uid
from api.schemas import Lesion, StudyResult

SR_SERIES_NUMBER = 9902
Group = (hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
         | hd.sr.MeasurementsAndQualitativeEvaluations)


def build_sr(job_id: str, result: StudyResult, sources: SourceImages,
             outlines: dict[int, Outline]) -> Dataset:
    """The SR of a finished study; ``outlines`` holds one per lesion id."""
    groups: list[Group] = [
        _lesion_group(job_id, result, lesion, sources, outlines[lesion.id])
        for lesion in sorted(result.lesions, key=lambda lesion: lesion.id)
    ] or [_no_finding(job_id, result)]
    report = hd.sr.MeasurementReport(
        observation_context=_observer(job_id),
        procedure_reported=codes.PROCEDURE,
        imaging_measurements=groups,
        title=sr_codes.DCM.ImagingMeasurementReport,
    )
    evidence = [*sources.datasets]
    if result.lesions:
        evidence.append(_seg_reference(job_id, sources.datasets[0]))
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=report_uid(job_id, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=report_uid(job_id, "sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description="bonemets findings",
    )


def _algorithm(result: StudyResult) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=result.model.version,
                                         family=codes.ALGORITHM_FAMILY)


def _observer(job_id: str) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=report_uid("bonemets", "device"), name=ALGORITHM_NAME,
        manufacturer_name=MANUFACTURER)
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=sr_codes.cid270.Device, observer_identifying_attributes=device))


def _lesion_group(job_id: str, result: StudyResult, lesion: Lesion, sources: SourceImages,
                  outline: Outline) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    algorithm = _algorithm(result)
    source, frame = sources.instance_of(outline.index)
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=outline.points,
        source_image=hd.sr.SourceImageForRegion(
            source.SOPClassUID, source.SOPInstanceUID,
            referenced_frame_numbers=None if frame is None else [frame]))
    measurements = [
        hd.sr.Measurement(name=codes.VOLUME, value=lesion.volume_ml, unit=codes.MILLILITRE,
                          algorithm_id=algorithm,
                          referenced_images=[_segment_source(job_id, lesion.id)]),
        hd.sr.Measurement(name=codes.LONG_AXIS, value=lesion.longest_axial_diameter_mm,
                          unit=codes.MILLIMETRE, algorithm_id=algorithm),
        hd.sr.Measurement(name=codes.PROBABILITY, value=lesion.probability_max,
                          unit=codes.NO_UNITS, derivation=codes.MAXIMUM, algorithm_id=algorithm),
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=tracking_uid(job_id, lesion.id), identifier=f"Lesion {lesion.id}"),
        referenced_region=region,
        finding_type=codes.FINDING,
        finding_sites=[hd.sr.FindingSite(codes.SITES[lesion.site])],
        algorithm_id=algorithm,
        measurements=measurements,
    )


def _segment_source(job_id: str, segment_number: int) -> hd.sr.SourceImageForMeasurement:
    """The SEG segment a volume was measured on (the Image Reference Macro's segment number)."""
    item = hd.sr.SourceImageForMeasurement(SegmentationStorage, report_uid(job_id, "seg"))
    item.ReferencedSOPSequence[0].ReferencedSegmentNumber = segment_number
    return item


def _no_finding(job_id: str, result: StudyResult) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=report_uid(job_id, "no-finding"), identifier="No finding"),
        finding_type=codes.FINDING,
        finding_sites=[hd.sr.FindingSite(codes.SITE)],
        algorithm_id=_algorithm(result),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.FINDING, codes.ABSENT)],
    )


def _seg_reference(job_id: str, source: Dataset) -> Dataset:
    """The SEG as evidence: its identifiers only, which are derived from the job id."""
    seg = Dataset()
    seg.StudyInstanceUID = source.StudyInstanceUID
    seg.SeriesInstanceUID = report_uid(job_id, "seg-series")
    seg.SOPClassUID = SegmentationStorage
    seg.SOPInstanceUID = report_uid(job_id, "seg")
    return seg

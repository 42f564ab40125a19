"""Checks of the SEG and SR a study answers with: dciodvfy, read-back, and the JSON's values."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset

DCIODVFY = shutil.which("dciodvfy")
# SNOMED CT finding site of each lesion ``site`` (api/reports/codes.py SITES).
SITE_CODES = {"vertebral_body": "51282000", "posterior_elements": "40265002",
              "rib": "113197003", "other_bone": "272673000", "unknown": "272673000"}


def dciodvfy(data: bytes, tmp_path: Path, name: str) -> list[str]:
    """dciodvfy's warnings on ``data`` (printed); fails on any error; skips without it."""
    if DCIODVFY is None:
        pytest.skip("dciodvfy (Debian's dicom3tools) is not installed")
    path = tmp_path / name
    path.write_bytes(data)
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    print(f"dciodvfy {name}: {len(warnings)} warnings", *warnings, sep="\n  ")
    assert errors == [], "\n".join(errors)
    return warnings


def mask_png(client: TestClient, job_id: str, index: int) -> np.ndarray:
    response = client.get(f"/v1/studies/{job_id}/slices/{index}/mask.png")
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content))) > 0


def source_key(ds: Dataset, frame: int | None) -> tuple[str, int]:
    return str(ds.SOPInstanceUID), 1 if frame is None else frame


def seg_frames(seg: Dataset) -> dict[tuple[str, int], np.ndarray]:
    """(source SOP instance, source frame) -> the lesion ids painted there, from the raw file."""
    pixels = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    painted: dict[tuple[str, int], np.ndarray] = {}
    shared = seg.SharedFunctionalGroupsSequence[0]
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence, strict=True):
        (source,) = item.DerivationImageSequence[0].SourceImageSequence
        key = (str(source.ReferencedSOPInstanceUID),
               int(source.get("ReferencedFrameNumber", 1)))
        # One segment: its identification is shared by every frame.
        identification = item.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence")
        number = int(identification[0].ReferencedSegmentNumber)
        labels = painted.setdefault(key, np.zeros(frame.shape, dtype=np.uint16))
        assert not (labels.astype(bool) & frame.astype(bool)).any(), "segments overlap"
        labels[frame.astype(bool)] = number
    return painted


def check_seg(client: TestClient, job: dict, sources: dict[str, Dataset],
              places: list[tuple[str, int]], data: bytes) -> Dataset:
    """The SEG against the JSON result and the mask PNGs, voxel for voxel on every slice."""
    result = job["result"]
    seg = pydicom.dcmread(io.BytesIO(data))
    assert hd.seg.segread(io.BytesIO(data)).number_of_segments == len(result["lesions"])
    first = next(iter(sources.values()))
    _check_identifiers(seg, first, "FrameOfReferenceUID")
    assert seg.SegmentationType == "BINARY"
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} <= set(
        sources)
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert sorted(segments) == sorted(lesion["id"] for lesion in result["lesions"])
    for number, segment in segments.items():
        assert segment.SegmentLabel == f"Lesion {number}"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "94222008"
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (
            "bonemets", result["model"]["version"])
        assert segment.TrackingID == f"Lesion {number}" and segment.TrackingUID
    painted = seg_frames(seg)
    assert all(labels.any() for labels in painted.values()), "an empty frame"
    for entry in result["slices"]:
        key = places[entry["index"]]
        assert key[0] == entry["sop_instance_uid"]
        expected = mask_png(client, job["id"], entry["index"])
        labels = painted.get(key, np.zeros_like(expected, dtype=np.uint16))
        np.testing.assert_array_equal(labels > 0, expected)
    if (first.Rows, first.Columns) == (512, 512):  # the model's grid: the same voxels
        counts = {n: sum(int((labels == n).sum()) for labels in painted.values())
                  for n in segments}
        assert counts == {lesion["id"]: lesion["voxels"] for lesion in result["lesions"]}
    for lesion in result["lesions"]:  # each lesion's pixels on each of its own slices
        for box in lesion["boxes"]:
            labels = painted[places[box["slice"]]]
            window = labels[box["row_min"]:box["row_max"] + 1, box["col_min"]:box["col_max"] + 1]
            assert (window == lesion["id"]).any(), (lesion["id"], box)
    return seg


def _check_identifiers(made: Dataset, source: Dataset, *extra: str) -> None:
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", *extra):
        assert made.get(keyword) == source.get(keyword), keyword
    assert made.SeriesInstanceUID != source.SeriesInstanceUID
    assert made.SOPInstanceUID != source.SOPInstanceUID


def _items(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []))


def _named(items: list[Dataset], meaning: str) -> list[Dataset]:
    return [i for i in items if i.ConceptNameCodeSequence[0].CodeMeaning == meaning]


def check_sr(job: dict, sources: dict[str, Dataset], places: list[tuple[str, int]],
             data: bytes, seg_uid: str | None) -> list[Dataset]:
    """The SR's groups against the JSON lesions; returns the groups."""
    result = job["result"]
    sr = pydicom.dcmread(io.BytesIO(data))
    hd.sr.srread(io.BytesIO(data))
    first = next(iter(sources.values()))
    # The SR's planar SCOORDs lie on their images: no Frame of Reference module (PS3.3 A.35.13).
    _check_identifiers(sr, first)
    (measurements,) = _named(_items(sr), "Imaging Measurements")
    groups = _named(_items(measurements), "Measurement Group")
    lesions = {lesion["id"]: lesion for lesion in result["lesions"]}
    assert len(groups) == max(len(lesions), 1)
    for group in groups:
        items = _items(group)
        (tracking,) = _named(items, "Tracking Identifier")
        if not lesions:
            (evaluation,) = _named(items, "Neoplasm, metastatic (morphologic abnormality)")
            assert evaluation.ConceptCodeSequence[0].CodeMeaning == "Absent"
            continue
        lesion = lesions[int(tracking.TextValue.removeprefix("Lesion "))]
        assert _value(items, "Volume") == pytest.approx(lesion["volume_ml"])
        assert _value(items, "Long axis") == pytest.approx(lesion["longest_axial_diameter_mm"])
        assert _value(items, "Probability") == pytest.approx(lesion["probability_max"])
        (finding,) = _named(items, "Finding")
        assert finding.ConceptCodeSequence[0].CodeValue == "14799000"
        (site,) = _named(items, "Finding Site")
        assert site.ConceptCodeSequence[0].CodeValue == SITE_CODES[lesion["site"]]
        assert tracking.TextValue == f"Lesion {lesion['id']}"
        (volume,) = _named(items, "Volume")
        (segment,) = _named(_items(volume), "Source of Measurement")
        (reference,) = segment.ReferencedSOPSequence
        assert reference.ReferencedSOPInstanceUID == seg_uid
        assert int(reference.ReferencedSegmentNumber) == lesion["id"]
        (outline,) = _named(items, "Image Region")
        assert outline.GraphicType == "POLYLINE"
        points = np.asarray(outline.GraphicData, dtype=float).reshape(-1, 2)
        assert len(points) >= 5 and (points[0] == points[-1]).all()
        _check_outline(lesion, places, outline, points)
    return groups


def _value(items: list[Dataset], meaning: str) -> float:
    (item,) = _named(items, meaning)
    return float(item.MeasuredValueSequence[0].NumericValue)


def _check_outline(lesion: dict, places: list[tuple[str, int]], outline: Dataset,
                   points: np.ndarray) -> None:
    """The outline lies on the lesion's largest slice's image, inside its box there."""
    (image,) = outline.ContentSequence[0].ReferencedSOPSequence
    key = (str(image.ReferencedSOPInstanceUID), int(image.get("ReferencedFrameNumber", 1)))
    (box,) = [b for b in lesion["boxes"] if places[b["slice"]] == key]
    assert points[:, 0].min() >= box["col_min"] and points[:, 0].max() <= box["col_max"] + 1
    assert points[:, 1].min() >= box["row_min"] and points[:, 1].max() <= box["row_max"] + 1

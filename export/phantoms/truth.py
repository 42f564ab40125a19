"""``truth.json`` beside each phantom study: UIDs, geometry, lesions and per-slice truth.

Slice indices everywhere are positions in ascending z (the order of ``Phantom.hounsfield``),
not instance numbers: head-first studies number their slices from the top down.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from export.phantoms.phantom import LesionTruth, Phantom, VariantTruth
from export.phantoms.spec import PhantomSpec

TRUTH_FILE = "truth.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SliceTruth:
    """One slice: where it is, which file and instance it is, whether it holds metastasis."""

    index: int
    z_mm: float
    instance_number: int
    sop_instance_uid: str
    file: str
    positive: bool
    lesion_ids: tuple[int, ...]


@dataclass(frozen=True)
class StudyTruth:
    """Everything known about a phantom study, as read back from ``truth.json``."""

    spec: PhantomSpec
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    seg_series_instance_uid: str
    seg_sop_instance_uid: str
    seg_file: str
    rows: int
    columns: int
    pixel_spacing_mm: tuple[float, float]
    slice_thickness_mm: float
    spacing_between_slices_mm: float
    origin_mm: tuple[float, float, float]
    lesions: tuple[LesionTruth, ...]
    slices: tuple[SliceTruth, ...]

    @property
    def negative(self) -> bool:
        """True when no slice holds metastasis."""
        return not self.lesions

    @property
    def positive_slices(self) -> list[int]:
        """Indices (ascending z) of slices with metastasis."""
        return [s.index for s in self.slices if s.positive]


def truth_dict(phantom: Phantom, datasets: Sequence[Dataset], files: Sequence[str],
               seg: Dataset) -> dict[str, Any]:
    """The JSON document for one study."""
    spec, first = phantom.spec, datasets[0]
    ids_by_slice: dict[int, list[int]] = {}
    for lesion in phantom.lesions:
        for k in lesion.slices:
            ids_by_slice.setdefault(k, []).append(lesion.id)
    positive = phantom.labels.reshape(phantom.labels.shape[0], -1).any(axis=1)
    return {
        "format_version": FORMAT_VERSION,
        "generator": "bonemets-phantom",
        "spec": spec.to_dict(),
        "negative": not phantom.lesions,
        "study_instance_uid": str(first.StudyInstanceUID),
        "series_instance_uid": str(first.SeriesInstanceUID),
        "frame_of_reference_uid": str(first.FrameOfReferenceUID),
        "seg_series_instance_uid": str(seg.SeriesInstanceUID),
        "seg_sop_instance_uid": str(seg.SOPInstanceUID),
        "seg_file": "seg.dcm",
        "seg_note": "negative study: every frame present and empty" if not phantom.lesions
        else "frames only for positive slices",
        "rows": spec.size,
        "columns": spec.size,
        "pixel_spacing_mm": list(phantom.pixel_spacing),
        "slice_thickness_mm": spec.slice_thickness_mm,
        "spacing_between_slices_mm": spec.slice_spacing_mm,
        "origin_mm": list(phantom.origin_mm),
        "slice_order": "ascending z (caudal to cranial); indices below use this order",
        "lesions": [_lesion_json(lesion) for lesion in phantom.lesions],
        "normal_variants": [_variant_json(variant) for variant in phantom.variants],
        # Only where asked for, so a default study's truth.json stays as it was.
        **({"metal": {"kind": spec.metal, "levels": list(phantom.metal_levels),
                      "slices": list(phantom.metal_slices)}} if spec.metal != "none" else {}),
        "slices": [
            {
                "index": k, "z_mm": z, "instance_number": int(ds.InstanceNumber),
                "sop_instance_uid": str(ds.SOPInstanceUID), "file": files[k],
                "positive": bool(positive[k]), "lesion_ids": ids_by_slice.get(k, []),
            }
            for k, (z, ds) in enumerate(zip(phantom.slice_positions_z, datasets, strict=True))
        ],
    }


def _lesion_json(lesion: LesionTruth) -> dict[str, Any]:
    data = asdict(lesion)
    data["centre_mm"] = list(lesion.centre_mm)
    data["slice_range"] = list(lesion.slice_range)
    data["bbox_px"] = {k: list(v) for k, v in lesion.bbox_px.items()}
    data["slices"] = list(lesion.slices)
    return data


def _variant_json(variant: VariantTruth) -> dict[str, Any]:
    data = asdict(variant)
    data["slices"] = list(variant.slices)
    data["bbox_px"] = {k: list(v) for k, v in variant.bbox_px.items()}
    return data


def write_truth(phantom: Phantom, datasets: Sequence[Dataset], files: Sequence[str],
                seg: Dataset, path: Path) -> None:
    """Write ``truth.json`` (stable key order, so equal studies give equal bytes)."""
    text = json.dumps(truth_dict(phantom, datasets, files, seg), indent=1)
    Path(path).write_text(text + "\n", encoding="utf-8")


def read_truth(study_dir: Path) -> StudyTruth:
    """Read ``truth.json`` of a study written by :func:`write_study`."""
    data = json.loads((Path(study_dir) / TRUTH_FILE).read_text(encoding="utf-8"))
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported truth format {data.get('format_version')!r}")
    return StudyTruth(
        spec=PhantomSpec.from_dict(data["spec"]),
        study_instance_uid=data["study_instance_uid"],
        series_instance_uid=data["series_instance_uid"],
        frame_of_reference_uid=data["frame_of_reference_uid"],
        seg_series_instance_uid=data["seg_series_instance_uid"],
        seg_sop_instance_uid=data["seg_sop_instance_uid"],
        seg_file=data["seg_file"],
        rows=data["rows"],
        columns=data["columns"],
        pixel_spacing_mm=(data["pixel_spacing_mm"][0], data["pixel_spacing_mm"][1]),
        slice_thickness_mm=data["slice_thickness_mm"],
        spacing_between_slices_mm=data["spacing_between_slices_mm"],
        origin_mm=(data["origin_mm"][0], data["origin_mm"][1], data["origin_mm"][2]),
        lesions=tuple(_lesion_from_json(item) for item in data["lesions"]),
        slices=tuple(
            SliceTruth(**{**item, "lesion_ids": tuple(item["lesion_ids"])})
            for item in data["slices"]
        ),
    )


def _lesion_from_json(item: dict[str, Any]) -> LesionTruth:
    return LesionTruth(**{
        **item,
        "centre_mm": tuple(item["centre_mm"]),
        "slice_range": tuple(item["slice_range"]),
        "bbox_px": {k: tuple(v) for k, v in item["bbox_px"].items()},
        "slices": tuple(item["slices"]),
    })

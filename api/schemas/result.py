"""A study's result: the one definition the pipeline builds, storage keeps and routes return.

Boxes are in each slice's own pixels, first and last row and column **inclusive**; the lesion
code's boxes are half-open, and :mod:`api.study.results` is the one place that converts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def example(value: dict[str, Any]) -> ConfigDict:
    """A model's config whose OpenAPI example is ``value``."""
    return ConfigDict(json_schema_extra={"example": value})


# The examples, each written once and nested where the models nest.
BOX = {"row_min": 305, "col_min": 244, "row_max": 318, "col_max": 260}
SLICE_BOX = {**BOX, "lesion_id": 1, "pixels": 181, "probability_max": 0.97}
BOX_3D = {"row_min": 301, "col_min": 240, "row_max": 322, "col_max": 266,
          "slice_min": 41, "slice_max": 47}
LESION_BOX = {"slice": 41, **BOX}
LESION = {
    "id": 1, "slice_range": [41, 47], "bbox": BOX_3D, "boxes": [LESION_BOX],
    "centre_mm": [-3.1, 42.7, -512.5], "volume_ml": 1.84, "longest_axial_diameter_mm": 17.2,
    "probability_max": 0.97, "probability_mean": 0.81, "voxels": 2310,
    "site": "vertebral_body",
}
_URL = "/v1/studies/5b0c3f8e2a9d4c6fb1e07a3d9c2e4f10/slices/41"
_SIGNED = "?client=ris-router&expires=1796397600&signature="
SLICE = {
    "index": 41, "sop_instance_uid": "1.2.826.0.1.3680043.8.498.1", "z_mm": -112.5,
    "rows": 512, "columns": 512, "boxes": [SLICE_BOX],
    "mask_url": f"{_URL}/mask.png{_SIGNED}Xq3k0n0H5GdM2Zb8yCwN1fJm7rT4uLhA9sEoVpKiWcQ",
    "overlay_url": f"{_URL}/overlay.png{_SIGNED}b7Ue2LwR9mQc4tYhN0aZ1xKjF5sPvG8dHiO3lSnTqEA",
}
WINDOW = {"level": 400.0, "width": 1800.0}
MODEL = {
    "name": "bonemets", "version": "demo-6", "platform": "python", "input_size": 512,
    "windows": [{"level": 400, "width": 1800}, {"level": 150, "width": 500}],
    "threshold": 0.187, "max_batch_size": 32, "ready": True,
}
TIMINGS = {"total_s": 6.2, "read_s": 0.3, "decode_s": 0.9, "inference_s": 5.1,
           "inference_wall_s": 2.4, "postprocess_s": 0.2}
RESULT = {
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.10",
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.11",
    "model": MODEL, "threshold": 0.187, "reporting_floor_mm": 5.0,
    "lesions_below_floor": 3, "slice_count": 120, "slice_spacing_mm": 2.5,
    "warnings": ["slices 17 and 18 are 5.0 mm apart, twice the series spacing"],
    "timings": TIMINGS, "lesions": [], "slices": [],
}


class Box2D(BaseModel):
    """A box in one slice's own pixels: rows and columns, first and last inclusive."""

    model_config = example(BOX)

    row_min: int
    col_min: int
    row_max: int
    col_max: int


class SliceBox(Box2D):
    model_config = example(SLICE_BOX)

    lesion_id: int | None = Field(description="the 3D lesion this box belongs to")
    pixels: int
    probability_max: float


class Box3D(Box2D):
    model_config = example(BOX_3D)

    slice_min: int
    slice_max: int


class LesionBox(Box2D):
    model_config = example(LESION_BOX)

    slice: int


class Lesion(BaseModel):
    model_config = example(LESION)

    id: int
    slice_range: tuple[int, int] = Field(description="first and last slice index, inclusive")
    bbox: Box3D = Field(description="3D box in the series' own pixels and slice indices")
    boxes: list[LesionBox] = Field(description="the lesion's 2D box on each of its slices")
    centre_mm: tuple[float, float, float] = Field(description="centroid, patient coordinates")
    volume_ml: float
    longest_axial_diameter_mm: float
    probability_max: float
    probability_mean: float
    voxels: int
    site: Literal["vertebral_body", "posterior_elements", "rib", "other_bone", "unknown"] = Field(
        default="unknown", description="where in the skeleton it sits, read from the slice's HU"
        " around the spinal canal; `unknown` where no canal is on the slice")


class SliceResult(BaseModel):
    model_config = example(SLICE)

    index: int = Field(description="position in the series, sorted along the slice normal")
    sop_instance_uid: str
    z_mm: float = Field(description="position along the slice normal, mm")
    rows: int
    columns: int
    boxes: list[SliceBox]
    mask_url: str = Field(description="the mask PNG: a signed link that opens without"
                          " credentials until `expires` (docs/api.md, Signed links)")
    overlay_url: str = Field(description="the overlay PNG: a signed link, like `mask_url`")


class WindowOut(BaseModel):
    model_config = example(WINDOW)

    level: float
    width: float


class ModelOut(BaseModel):
    model_config = example(MODEL)

    name: str
    version: str
    platform: str
    input_size: int
    windows: list[WindowOut]
    threshold: float
    max_batch_size: int
    ready: bool


class Timings(BaseModel):
    model_config = example(TIMINGS)

    total_s: float = Field(description="wall clock from the header pass to the stored result")
    read_s: float = Field(description="header pass and series choice")
    decode_s: float = Field(description="pixel decoding and HU, summed over workers")
    inference_s: float = Field(
        description="each batch's wait on the model, summed over batches; batches are in flight"
        " together, so this can exceed total_s"
    )
    inference_wall_s: float | None = Field(
        default=None,
        description="wall clock during which at least one batch was at the model (never more"
        " than total_s); null in results stored before this field existed",
    )
    postprocess_s: float


class StudyResult(BaseModel):
    model_config = example(RESULT)

    study_instance_uid: str
    series_instance_uid: str
    model: ModelOut
    threshold: float
    # Defaults: a result stored before the floor existed hid nothing.
    reporting_floor_mm: float = Field(
        default=0.0, description="lesions whose longest axial diameter is below this (mm) are"
        " not reported: not in `lesions`, `slices`, masks, overlays, SEG or SR; 0: none hidden")
    lesions_below_floor: int = Field(
        default=0, description="how many lesions the reporting floor hid")
    slice_count: int
    slice_spacing_mm: float | None
    warnings: list[str]
    timings: Timings
    lesions: list[Lesion]
    slices: list[SliceResult]

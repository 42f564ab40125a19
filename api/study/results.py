"""Model answers become the study's result (:class:`api.schemas.StudyResult`): 2D boxes per
slice, 3D lesions, stored masks."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from api.dicom.geometry import ResizeMapping
from api.dicom.series import CTSeries
from api.dicom.slices import load_slice_hounsfield
from api.inference.protocol import ModelInfo, Segmentation
from api.lesions.components import Component2D, PixelBox, components_2d
from api.lesions.lesion import with_site
from api.lesions.lesions3d import Lesion3D, LesionTracker
from api.lesions.measures import model_pixel_spacing
from api.schemas.result import (
    Box2D,
    Box3D,
    Lesion,
    LesionBox,
    SliceBox,
    SliceResult,
    StudyResult,
    Timings,
)
from api.study.catalog import model_description
from api.study.decoding import DecodedBatch
from api.study.floor import FoundBox, erase_hidden, may_be_hidden, split_by_floor
from api.study.storage import StudyStore


class StudyAccumulator:
    """Takes batches in slice order; holds per-slice boxes and the tracker's open lesions only."""

    def __init__(self, job_id: str, series: CTSeries, info: ModelInfo,
                 store: StudyStore, *, floor_mm: float = 0.0) -> None:
        if floor_mm < 0:
            raise ValueError(f"the reporting floor must be >= 0 mm, got {floor_mm}")
        self.job_id = job_id
        self.floor_mm = floor_mm
        self.series = series
        self.info = info
        self.store = store
        # Plain paths: the routes sign them (and add BONEMETS_PUBLIC_URL) each time they answer.
        self.base_url = f"/v1/studies/{job_id}/slices"
        spacing = series.slice_spacing_mm or series.slice_thickness or 1.0
        self.tracker = LesionTracker(slice_spacing_mm=spacing)
        self.boxes: dict[int, list[FoundBox]] = {}
        self.slices_done = 0
        self.decode_s = 0.0
        self.inference_s = 0.0
        self.postprocess_s = 0.0

    def add_batch(self, batch: DecodedBatch, segmentation: Segmentation,
                  lesioned: npt.NDArray[np.bool_]) -> None:
        """Take the next batch; ``lesioned`` says which of its slices have any mask pixel
        (:func:`lesioned_slices`)."""
        began = time.perf_counter()
        count = len(batch.mappings)
        refs = self.series.slices[batch.start:batch.start + count]
        for offset, (ref, mapping) in enumerate(zip(refs, batch.mappings, strict=True)):
            index = batch.start + offset
            components: list[Component2D] = []
            if lesioned[offset]:
                mask = segmentation.mask[offset]
                components = components_2d(mask, segmentation.probability[offset])
            keys = self.tracker.add_slice(index, components, ref.geometry, mapping,
                                          position_mm=ref.z)
            if components:
                original = mapping.mask_to_original(mask)
                self.store.write_mask(self.job_id, index, original)
                spacing = model_pixel_spacing(ref.geometry, mapping)
                self.boxes[index] = [
                    _found(c, key, mapping, may_be_hidden(c.box, spacing, self.floor_mm))
                    for c, key in zip(components, keys, strict=True)]
        self.slices_done = batch.start + count
        self.decode_s += batch.decode_cpu_s
        self.inference_s += batch.inference_s
        self.postprocess_s += time.perf_counter() - began

    def finish(self, read_s: float, total_s: float, inference_wall_s: float) -> StudyResult:
        """The study's result, once every batch is in."""
        lesions, hidden = split_by_floor(self.tracker.finish(), self.floor_mm)
        # Only the kept lesions are placed: one slice decoded again for each (in a thread).
        lesions = [with_site(lesion, self._hounsfield_at) for lesion in lesions]
        if hidden:
            self._hide({lesion.id for lesion in hidden})
        owners = _box_owners(lesions)
        timings = Timings(
            total_s=round(total_s, 4), read_s=round(read_s, 4), decode_s=round(self.decode_s, 4),
            inference_s=round(self.inference_s, 4), inference_wall_s=round(inference_wall_s, 4),
            postprocess_s=round(self.postprocess_s, 4),
        )
        return StudyResult(
            study_instance_uid=self.series.study_uid,
            series_instance_uid=self.series.series_uid,
            model=model_description(self.info, True),
            threshold=self.info.threshold,
            reporting_floor_mm=self.floor_mm,
            lesions_below_floor=len(hidden),
            slice_count=len(self.series.slices),
            slice_spacing_mm=self.series.slice_spacing_mm,
            warnings=list(self.series.warnings),
            timings=timings,
            lesions=[_lesion(lesion) for lesion in lesions],
            slices=[self._slice(i, owners) for i in range(len(self.series.slices))],
        )

    def _hounsfield_at(self, index: int) -> tuple[npt.NDArray[np.int16], tuple[float, float]]:
        """Slice ``index``'s HU in its own pixels (the grid of the lesions' boxes), and its
        pixel spacing: what :func:`~api.lesions.lesion.with_site` reads a site from."""
        ref = self.series.slices[index]
        return load_slice_hounsfield(ref), ref.geometry.pixel_spacing

    def _hide(self, hidden_ids: set[int]) -> None:
        """Drop the components of hidden lesions from the boxes and the stored masks."""
        for index in sorted(self.boxes):
            found = self.boxes[index]
            gone = [f for f in found if self.tracker.lesion_id(f.lesion_key) in hidden_ids]
            if not gone:
                continue
            ref = self.series.slices[index]
            erase_hidden(self.store, self.job_id, index,
                         (ref.geometry.rows, ref.geometry.columns), gone)
            left = [f for f in found if all(f is not g for g in gone)]
            if left:
                self.boxes[index] = left
            else:
                del self.boxes[index]

    def _slice(self, index: int, owners: dict[int, list[tuple[int, PixelBox]]]) -> SliceResult:
        ref = self.series.slices[index]
        boxes = []
        for found in self.boxes.get(index, []):
            lesion_id = _owner(found.box, owners.get(index, []))
            boxes.append(SliceBox(**inclusive(found.box), lesion_id=lesion_id,
                                  pixels=found.pixels,
                                  probability_max=round(found.probability_max, 4)))
        return SliceResult(
            index=index, sop_instance_uid=ref.sop_instance_uid, z_mm=round(ref.z, 4),
            rows=ref.geometry.rows, columns=ref.geometry.columns, boxes=boxes,
            mask_url=f"{self.base_url}/{index}/mask.png",
            overlay_url=f"{self.base_url}/{index}/overlay.png",
        )


def lesioned_slices(segmentation: Segmentation) -> npt.NDArray[np.bool_]:
    """Which slices of a batch have any mask pixel, in one pass over the masks."""
    count = segmentation.mask.shape[0]
    lesioned: npt.NDArray[np.bool_] = segmentation.mask.reshape(count, -1).any(axis=1)
    return lesioned


def inclusive(box: PixelBox) -> dict[str, int]:
    """A half-open box of the lesion code as the API's inclusive corners (see :func:`half_open`)."""
    return {"row_min": box.row0, "col_min": box.col0, "row_max": box.row1 - 1,
            "col_max": box.col1 - 1}


def half_open(box: Box2D) -> PixelBox:
    """An API box back as the lesion code's half-open one; :func:`inclusive` undone."""
    return PixelBox(box.row_min, box.col_min, box.row_max + 1, box.col_max + 1)


def _found(component: Component2D, lesion_key: int, mapping: ResizeMapping,
           keep_pixels: bool) -> FoundBox:
    """The component on the slice's own grid; its pixels there too when ``keep_pixels``."""
    box = component.box.to_original(mapping)
    if mapping.is_identity:
        own = component.mask
    else:
        full = np.zeros((mapping.size, mapping.size), dtype=bool)
        full[component.box.slices] = component.mask
        own = mapping.mask_to_original(full)[box.slices]
    return FoundBox(box, int(own.sum()), component.max_probability, lesion_key,
                    own.copy() if keep_pixels else None)


def _box_owners(lesions: list[Lesion3D]) -> dict[int, list[tuple[int, PixelBox]]]:
    owners: dict[int, list[tuple[int, PixelBox]]] = {}
    for lesion in lesions:
        for slice_box in lesion.slice_boxes:
            owners.setdefault(slice_box.index, []).append((lesion.id, slice_box.box))
    return owners


def _owner(box: PixelBox, owners: list[tuple[int, PixelBox]]) -> int | None:
    """The first lesion whose box on this slice holds ``box``."""
    return next((lesion_id for lesion_id, outer in owners if _inside(box, outer)), None)


def _inside(inner: PixelBox, outer: PixelBox) -> bool:
    return (outer.row0 <= inner.row0 and outer.col0 <= inner.col0
            and inner.row1 <= outer.row1 and inner.col1 <= outer.col1)


def _lesion(lesion: Lesion3D) -> Lesion:
    b = lesion.box
    in_plane = inclusive(PixelBox(b.row0, b.col0, b.row1, b.col1))
    return Lesion(
        id=lesion.id,
        slice_range=(lesion.first_slice, lesion.last_slice),
        bbox=Box3D(**in_plane, slice_min=b.slice0, slice_max=b.slice1 - 1),
        boxes=[LesionBox(slice=sb.index, **inclusive(sb.box)) for sb in lesion.slice_boxes],
        centre_mm=(round(lesion.centre_mm[0], 3), round(lesion.centre_mm[1], 3),
                   round(lesion.centre_mm[2], 3)),
        volume_ml=round(lesion.volume_ml, 4),
        longest_axial_diameter_mm=round(lesion.longest_diameter_mm, 3),
        probability_max=round(lesion.max_probability, 4),
        probability_mean=round(lesion.mean_probability, 4),
        voxels=lesion.voxel_count,
        site=lesion.site.value,
    )

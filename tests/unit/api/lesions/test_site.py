"""Where a lesion sits: read on phantom slices whose truth says it, and ``unknown`` where a
slice has no spine."""

from __future__ import annotations

import numpy as np
import pytest

from api.lesions.components import PixelBox
from api.lesions.lesion import Box3D, Lesion3D, SliceBox, with_site
from api.lesions.site import BoneSite, site_in_box, site_on_slice
from export.phantoms import make_phantom, sample_spec

TRUTH = {"vertebral_body": BoneSite.VERTEBRAL_BODY, "pedicle": BoneSite.POSTERIOR_ELEMENTS,
         "rib": BoneSite.RIB}


def _largest_cross_section(labels: np.ndarray, bbox: dict[str, tuple[int, int]],
                           slices: tuple[int, ...]) -> tuple[int, np.ndarray]:
    (r0, r1), (c0, c1) = bbox["row"], bbox["col"]
    best: tuple[int, np.ndarray] | None = None
    for k in slices:
        mask = np.zeros(labels.shape[1:], bool)
        mask[r0:r1 + 1, c0:c1 + 1] = labels[k, r0:r1 + 1, c0:c1 + 1] > 0
        if best is None or mask.sum() > best[1].sum():
            best = (k, mask)
    assert best is not None
    return best


@pytest.mark.parametrize("seed", [100000, 100007])
def test_each_phantom_lesion_is_placed_where_the_truth_says(seed: int) -> None:
    phantom = make_phantom(sample_spec(seed, slices=32, n_lesions=6))
    wanted, found = [], []
    for lesion in phantom.lesions:
        k, mask = _largest_cross_section(phantom.labels, lesion.bbox_px, lesion.slices)
        wanted.append(TRUTH[lesion.site])
        found.append(site_on_slice(phantom.hounsfield[k], mask, phantom.pixel_spacing))
    assert len(set(wanted)) >= 2  # the test needs more than one kind of site
    assert sum(w == f for w, f in zip(wanted, found, strict=True)) >= len(wanted) - 1


def test_a_head_without_a_spine_is_unknown() -> None:
    rows, columns = np.mgrid[:512, :512]
    radius = np.hypot(rows - 256, (columns - 256) * 0.8)
    head = np.full((512, 512), -1000, np.int16)
    head[radius < 200] = 1200  # skull
    head[radius < 190] = 30  # brain
    lesion = np.zeros((512, 512), bool)
    lesion[60:66, 250:262] = True  # in the skull
    assert site_on_slice(head, lesion, (0.5, 0.5)) == BoneSite.UNKNOWN


def test_a_box_on_a_vertebral_body_reads_as_the_mask_does() -> None:
    phantom = make_phantom(sample_spec(100000, slices=32, n_lesions=6))
    lesion = next(les for les in phantom.lesions if les.site == "vertebral_body")
    k, mask = _largest_cross_section(phantom.labels, lesion.bbox_px, lesion.slices)
    rows, columns = np.nonzero(mask)
    box = PixelBox(int(rows.min()), int(columns.min()), int(rows.max()) + 1,
                   int(columns.max()) + 1)
    assert site_in_box(phantom.hounsfield[k], box, phantom.pixel_spacing) == (
        BoneSite.VERTEBRAL_BODY)


def test_an_empty_mask_is_unknown() -> None:
    slice_hu = np.zeros((64, 64), np.int16)
    assert site_on_slice(slice_hu, np.zeros((64, 64), bool), (1.0, 1.0)) == BoneSite.UNKNOWN


def test_a_3d_lesion_takes_the_site_of_its_largest_cross_section() -> None:
    phantom = make_phantom(sample_spec(100000, slices=32, n_lesions=6))
    truth = next(les for les in phantom.lesions if les.site == "rib")
    k, mask = _largest_cross_section(phantom.labels, truth.bbox_px, truth.slices)
    rows, columns = np.nonzero(mask)
    box = PixelBox(int(rows.min()), int(columns.min()), int(rows.max()) + 1,
                   int(columns.max()) + 1)
    # A stray voxel on another slice, in the vertebral body's place, must not decide.
    stray = SliceBox(k + 1, PixelBox(0, 0, 1, 1), 1, 0.5)
    boxes = tuple(sorted([SliceBox(k, box, int(mask.sum()), 0.9), stray], key=lambda b: b.index))
    lesion = Lesion3D(id=1, first_slice=boxes[0].index, last_slice=boxes[-1].index,
                      box=Box3D(0, 0, boxes[0].index, 1, 1, boxes[-1].index + 1),
                      slice_boxes=boxes, centre_mm=(0.0, 0.0, 0.0), volume_ml=0.1,
                      longest_diameter_mm=5.0, max_probability=0.9, mean_probability=0.8,
                      voxel_count=int(mask.sum()) + 1)
    assert lesion.site == BoneSite.UNKNOWN
    asked = []

    def slice_at(index: int) -> tuple[np.ndarray, tuple[float, float]]:
        asked.append(index)
        return phantom.hounsfield[index], phantom.pixel_spacing

    assert with_site(lesion, slice_at).site == BoneSite.RIB
    assert asked == [k]

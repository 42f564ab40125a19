"""2-D components and 3-D lesions, on small hand-built masks whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial.distance import pdist

from api.dicom.geometry import PlaneGeometry, ResizeMapping
from api.lesions import components as components_module
from api.lesions.components import PixelBox, components_2d, label_components
from api.lesions.lesions3d import Lesion3D, LesionTracker
from api.lesions.linking import DisjointSets, overlapping_labels
from api.lesions.measures import feret_diameter_mm

SIZE = 32
SPACING = (0.5, 0.8)  # mm between rows, between columns


def _geometry(z: float, rows: int = SIZE, columns: int = SIZE) -> PlaneGeometry:
    return PlaneGeometry(
        origin=(0.0, 0.0, z),
        row_cosine=(1.0, 0.0, 0.0),
        column_cosine=(0.0, 1.0, 0.0),
        pixel_spacing=SPACING,
        rows=rows,
        columns=columns,
    )


def _probability(mask: NDArray[np.bool_], value: int = 200) -> NDArray[np.uint8]:
    return np.full((mask.shape[0] // 4, mask.shape[1] // 4), value, dtype=np.uint8)


def _track(
    volume: NDArray[np.bool_],
    positions: list[float],
    *,
    mapping: ResizeMapping | None = None,
    fallback_mm: float = 2.0,
    connectivity: components_module.Connectivity = 8,
) -> list[Lesion3D]:
    mapping = mapping or ResizeMapping.fit((SIZE, SIZE), SIZE)
    tracker = LesionTracker(fallback_mm)
    for index, (mask, z) in enumerate(zip(volume, positions, strict=True)):
        parts = components_2d(mask, _probability(mask), connectivity=connectivity)
        tracker.add_slice(index, parts, _geometry(z, *mapping.original_shape), mapping)
    return tracker.finish()


# --- components ---------------------------------------------------------------------------


def test_empty_mask_returns_nothing_without_labelling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("labelled an empty mask")

    monkeypatch.setattr("scipy.ndimage.label", refuse)
    mask = np.zeros((16, 16), dtype=np.bool_)
    assert components_2d(mask, _probability(mask)) == []


def test_component_box_probability_and_centroid() -> None:
    mask = np.zeros((16, 16), dtype=np.bool_)
    mask[2:6, 2:6] = True  # 4x4 square covering four probability blocks, 4 pixels each
    probability = np.zeros((4, 4), dtype=np.uint8)
    probability[0, 0], probability[0, 1], probability[1, 0], probability[1, 1] = 255, 51, 102, 0
    probability[3, 3] = 255  # elsewhere: must not count
    (part,) = components_2d(mask, probability)
    assert part.label == 1
    assert part.pixel_count == 16
    assert part.box == PixelBox(2, 2, 6, 6)
    assert part.max_probability == 1.0
    assert part.mean_probability == pytest.approx((1.0 + 0.2 + 0.4 + 0.0) / 4)
    assert part.centroid == (3.5, 3.5)
    np.testing.assert_array_equal(part.mask, mask[2:6, 2:6])


def test_connectivity_decides_whether_diagonal_pixels_join() -> None:
    mask = np.zeros((8, 8), dtype=np.bool_)
    mask[1, 1] = mask[2, 2] = True  # diagonal neighbours
    mask[5:7, 5:7] = True
    assert [p.pixel_count for p in components_2d(mask, _probability(mask))] == [2, 4]
    four = components_2d(mask, _probability(mask), connectivity=4)
    assert [p.pixel_count for p in four] == [1, 1, 4]
    assert [p.label for p in four] == [1, 2, 3]


def test_min_pixels_drops_small_components_and_renumbers() -> None:
    mask = np.zeros((8, 8), dtype=np.bool_)
    mask[0, 0] = True
    mask[4:7, 4:7] = True
    labels, count = label_components(mask, min_pixels=2)
    assert count == 1
    assert labels[0, 0] == 0 and (labels[4:7, 4:7] == 1).all()
    (part,) = components_2d(mask, _probability(mask), min_pixels=2)
    assert (part.label, part.pixel_count, part.box) == (1, 9, PixelBox(4, 4, 7, 7))


def test_probability_map_must_divide_the_mask() -> None:
    mask = np.ones((16, 16), dtype=np.bool_)
    with pytest.raises(ValueError):
        components_2d(mask, np.zeros((5, 4), dtype=np.uint8))


@pytest.mark.parametrize("original_shape", [(64, 40), (20, 12), (32, 32)])
def test_box_to_original_matches_mask_to_original(original_shape: tuple[int, int]) -> None:
    mapping = ResizeMapping.fit(original_shape, SIZE)
    rng = np.random.default_rng(7)
    for _ in range(20):
        mask = np.zeros((SIZE, SIZE), dtype=np.bool_)
        r, c = rng.integers(0, SIZE - 6, size=2)
        h, w = rng.integers(3, 7, size=2)
        mask[r : r + h, c : c + w] = True
        original = mapping.mask_to_original(mask)
        if not original.any():
            continue
        rows = np.flatnonzero(original.any(axis=1))
        cols = np.flatnonzero(original.any(axis=0))
        expected = PixelBox(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
        assert PixelBox(int(r), int(c), int(r + h), int(c + w)).to_original(mapping) == expected


# --- measures and linking -------------------------------------------------------------------


def test_feret_diameter_of_simple_shapes() -> None:
    line = np.zeros((5, 9), dtype=np.bool_)
    line[2, 1:6] = True
    assert feret_diameter_mm(line, SPACING) == pytest.approx(4 * 0.8)
    square = np.ones((3, 3), dtype=np.bool_)
    assert feret_diameter_mm(square, SPACING) == pytest.approx(math.hypot(2 * 0.5, 2 * 0.8))
    assert feret_diameter_mm(np.ones((1, 1), dtype=np.bool_), SPACING) == 0.0


def test_feret_diameter_of_a_large_blob_equals_brute_force() -> None:
    rows, cols = np.mgrid[0:60, 0:60]
    blob = ((rows - 30) ** 2 / 400 + (cols - 28) ** 2 / 150 <= 1) | ((rows - 10) ** 2 < 4)
    points = np.argwhere(blob) * np.asarray(SPACING)
    assert feret_diameter_mm(blob, SPACING) == pytest.approx(pdist(points).max())


def test_disjoint_sets_and_overlapping_labels() -> None:
    sets = DisjointSets()
    a, b, c = sets.add(), sets.add(), sets.add()
    sets.union(c, b)
    assert sets.find(c) == sets.find(b) == b and sets.find(a) == a
    assert sets.roots().tolist() == [0, 1, 1]
    previous = np.array([[1, 1, 0], [0, 0, 2]])
    current = np.array([[0, 3, 3], [0, 4, 4]])
    assert overlapping_labels(previous, current).tolist() == [[1, 3], [2, 4]]


# --- 3-D lesions ----------------------------------------------------------------------------


def test_one_lesion_on_three_slices_with_volume_centre_and_diameter() -> None:
    volume = np.zeros((4, SIZE, SIZE), dtype=np.bool_)
    volume[0:3, 10:13, 20:23] = True  # slice 3 empty: closes the lesion
    volume[1, 11, 23:26] = True  # widens slice 1 to a 3x6 box, 12 pixels
    (lesion,) = _track(volume, [0.0, 2.0, 4.0, 6.0])
    assert (lesion.id, lesion.first_slice, lesion.last_slice) == (1, 0, 2)
    assert lesion.voxel_count == 30
    # 30 voxels x 0.4 mm^2 x 2 mm slices
    assert lesion.volume_ml == pytest.approx(30 * 0.4 * 2.0 / 1000)
    assert [(s.index, s.box, s.voxels) for s in lesion.slice_boxes] == [
        (0, PixelBox(10, 20, 13, 23), 9),
        (1, PixelBox(10, 20, 13, 26), 12),
        (2, PixelBox(10, 20, 13, 23), 9),
    ]
    assert (lesion.box.row0, lesion.box.col0, lesion.box.slice0) == (10, 20, 0)
    assert (lesion.box.row1, lesion.box.col1, lesion.box.slice1) == (13, 26, 3)
    assert (lesion.box.row_max, lesion.box.col_max, lesion.box.slice_max) == (12, 25, 2)
    # Voxel-weighted centroid: x = column x 0.8, y = row x 0.5, z = slice position.
    column = (9 * 21 + (9 * 21 + 3 * 24) + 9 * 21) / 30
    z = (9 * 0.0 + 12 * 2.0 + 9 * 4.0) / 30
    assert lesion.centre_mm == pytest.approx((column * 0.8, 11 * 0.5, z))
    # Longest: slice 1, from (10, 20) or (12, 20) to (11, 25)
    assert lesion.longest_diameter_mm == pytest.approx(math.hypot(1 * 0.5, 5 * 0.8))
    assert lesion.max_probability == lesion.mean_probability == pytest.approx(200 / 255)


def test_probabilities_per_slice_and_voxel_weighted_over_the_lesion() -> None:
    mapping = ResizeMapping.fit((SIZE, SIZE), SIZE)
    tracker = LesionTracker(1.0)
    first, second = np.zeros((SIZE, SIZE), np.bool_), np.zeros((SIZE, SIZE), np.bool_)
    first[4:8, 4:8] = True  # 16 pixels at 51 (0.2)
    second[4:6, 4:8] = True  # 8 pixels at 255 (1.0)
    for index, (mask, value) in enumerate([(first, 51), (second, 255)]):
        parts = components_2d(mask, _probability(mask, value))
        tracker.add_slice(index, parts, _geometry(float(index)), mapping)
    (lesion,) = tracker.finish()
    assert [s.max_probability for s in lesion.slice_boxes] == [0.2, 1.0]
    assert lesion.max_probability == 1.0
    assert lesion.mean_probability == pytest.approx((16 * 0.2 + 8 * 1.0) / 24)


def test_volume_uses_actual_distances_between_slices() -> None:
    volume = np.zeros((4, SIZE, SIZE), dtype=np.bool_)
    volume[1:3, 4:7, 4:7] = True
    (lesion,) = _track(volume, [0.0, 1.0, 3.0, 7.0])
    # slice 1 spans (1 + 2) / 2 = 1.5 mm, slice 2 spans (2 + 4) / 2 = 3 mm
    assert lesion.volume_ml == pytest.approx(9 * 0.4 * (1.5 + 3.0) / 1000)


def test_single_slice_series_uses_the_given_spacing() -> None:
    volume = np.zeros((1, SIZE, SIZE), dtype=np.bool_)
    volume[0, 4:6, 4:6] = True
    (lesion,) = _track(volume, [10.0], fallback_mm=5.0)
    assert lesion.volume_ml == pytest.approx(4 * 0.4 * 5.0 / 1000)


def test_resized_slices_scale_boxes_area_and_diameter() -> None:
    mapping = ResizeMapping.fit((64, 48), SIZE)  # scale 0.5, columns padded by 4 model pixels
    volume = np.zeros((2, SIZE, SIZE), dtype=np.bool_)
    volume[0, 10:12, 8:13] = True
    (lesion,) = _track(volume, [0.0, 3.0], mapping=mapping)
    expected_box = PixelBox(10, 8, 12, 13).to_original(mapping)
    assert lesion.slice_boxes[0].box == expected_box == PixelBox(20, 8, 24, 18)
    # one model pixel is 2x2 original pixels: 1.0 mm x 1.6 mm; slice spans 3 mm
    assert lesion.volume_ml == pytest.approx(10 * 1.0 * 1.6 * 3.0 / 1000)
    assert lesion.longest_diameter_mm == pytest.approx(math.hypot(1 * 1.0, 4 * 1.6))


def test_components_merge_and_split_into_one_lesion() -> None:
    volume = np.zeros((4, SIZE, SIZE), dtype=np.bool_)
    volume[0, 2:4, 2:4] = volume[0, 2:4, 10:12] = True  # two blobs
    volume[1, 3, 2:12] = True  # a bridge joins them
    volume[2, 3, 2:4] = volume[2, 3, 10:12] = True  # and it splits again
    lesions = _track(volume, [0.0, 1.0, 2.0, 3.0])
    assert len(lesions) == 1
    assert lesions[0].voxel_count == 8 + 10 + 4
    assert [s.box for s in lesions[0].slice_boxes] == [PixelBox(2, 2, 4, 12)] + [
        PixelBox(3, 2, 4, 12)
    ] * 2


def test_ids_follow_first_slice_then_row_then_column() -> None:
    volume = np.zeros((3, SIZE, SIZE), dtype=np.bool_)
    volume[1, 2:4, 2:4] = True  # starts later
    volume[0, 20:22, 20:22] = True
    volume[0, 20:22, 2:4] = True  # same slice and row, further left
    lesions = _track(volume, [0.0, 1.0, 2.0])
    assert [(x.id, x.first_slice, x.box.row0, x.box.col0) for x in lesions] == [
        (1, 0, 20, 2),
        (2, 0, 20, 20),
        (3, 1, 2, 2),
    ]


def test_a_gap_in_indices_ends_lesions_and_indices_must_ascend() -> None:
    mapping = ResizeMapping.fit((SIZE, SIZE), SIZE)
    mask = np.zeros((SIZE, SIZE), dtype=np.bool_)
    mask[4:6, 4:6] = True
    tracker = LesionTracker(2.0)
    tracker.add_slice(0, components_2d(mask, _probability(mask)), _geometry(0.0), mapping)
    tracker.add_slice(2, components_2d(mask, _probability(mask)), _geometry(4.0), mapping)
    with pytest.raises(ValueError):
        tracker.add_slice(2, [], _geometry(4.0), mapping)
    lesions = tracker.finish()
    assert [(x.first_slice, x.last_slice) for x in lesions] == [(0, 0), (2, 2)]
    assert [x.volume_ml for x in lesions] == pytest.approx([4 * 0.4 * 2.0 / 1000] * 2)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_lesions_equal_scipy_labelling_of_the_whole_volume(connectivity: int) -> None:
    rng = np.random.default_rng(3)
    volume = ndimage.binary_opening(rng.random((12, SIZE, SIZE)) < 0.35, np.ones((1, 2, 1)))
    structure = np.zeros((3, 3, 3), dtype=np.bool_)
    structure[1] = components_module.structure(8 if connectivity == 8 else 4)
    structure[0, 1, 1] = structure[2, 1, 1] = True
    labels, count = ndimage.label(volume, structure=structure)
    expected = sorted(np.bincount(labels.ravel())[1:].tolist())
    lesions = _track(
        volume, [float(i) for i in range(12)], connectivity=8 if connectivity == 8 else 4
    )
    assert len(lesions) == count
    assert sorted(x.voxel_count for x in lesions) == expected
    assert [x.id for x in lesions] == list(range(1, count + 1))


def test_every_component_s_key_leads_to_its_lesion_s_id_after_merges() -> None:
    volume = np.zeros((4, SIZE, SIZE), dtype=np.bool_)
    volume[0, 2:4, 2:4] = volume[0, 2:4, 10:12] = True  # two lesions, merged on slice 1
    volume[1, 3, 2:12] = True
    volume[0, 20:22, 20:22] = True  # a third, alone
    volume[3, 20:22, 2:4] = True  # a fourth, later
    mapping = ResizeMapping.fit((SIZE, SIZE), SIZE)
    tracker = LesionTracker(2.0)
    keys = []
    for index, mask in enumerate(volume):
        parts = components_2d(mask, _probability(mask))
        boxes = [part.box for part in parts]
        keys += zip(boxes, tracker.add_slice(index, parts, _geometry(float(index)), mapping),
                    strict=True)
    lesions = tracker.finish()
    owner = {box: tracker.lesion_id(key) for box, key in keys}
    by_first = {(x.first_slice, x.box.row0, x.box.col0): x.id for x in lesions}
    assert owner[PixelBox(2, 2, 4, 4)] == owner[PixelBox(2, 10, 4, 12)] == by_first[(0, 2, 2)]
    assert owner[PixelBox(3, 2, 4, 12)] == by_first[(0, 2, 2)]
    assert owner[PixelBox(20, 20, 22, 22)] == by_first[(0, 20, 20)]
    assert owner[PixelBox(20, 2, 22, 4)] == by_first[(3, 20, 2)]
    assert len({by_first[k] for k in by_first}) == 3

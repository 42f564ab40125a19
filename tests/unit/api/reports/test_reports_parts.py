"""The pieces of the SEG and SR: outlines, lesion labels, derived UIDs, kept outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api.reports.labels import lesion_labels
from api.reports.outline import largest_region, outline
from api.reports.uids import report_uid, tracking_uid
from api.study.storage import StudyStore

JOB = "0123456789abcdef0123456789abcdef"


def test_a_single_pixel_is_outlined_by_its_square() -> None:
    mask = np.zeros((4, 5), dtype=bool)
    mask[1, 2] = True
    assert outline(mask).tolist() == [[2, 1], [3, 1], [3, 2], [2, 2], [2, 1]]


def test_an_l_shape_is_outlined_clockwise_along_pixel_edges() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:4, 1] = True
    mask[3, 1:4] = True
    assert outline(mask).tolist() == [
        [1, 1], [2, 1], [2, 3], [4, 3], [4, 4], [1, 4], [1, 1]]


def test_pixels_touching_at_a_corner_share_one_outline() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[1, 1] = True
    points = outline(largest_region(mask)).tolist()
    assert points == [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [1, 2], [1, 1], [0, 1], [0, 0]]


def test_the_largest_region_is_chosen_and_its_holes_filled() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[0, 7] = True
    mask[2:7, 1:6] = True
    mask[4, 3] = False
    region = largest_region(mask)
    assert region.sum() == 25 and not region[0, 7]


def test_components_go_to_the_lesion_with_their_exact_box_or_the_smallest_holding_one() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[1:8, 1:8] = True
    mask[3:6, 3:6] = False
    mask[4, 4] = True  # a small lesion inside the big one's box
    labels = lesion_labels(mask, [(1, (1, 1, 7, 7)), (2, (4, 4, 4, 4))])
    assert labels[4, 4] == 2
    assert (labels[mask] > 0).all() and (labels == 1).sum() == mask.sum() - 1
    # A component that is exactly no lesion's box goes to the smallest box holding it.
    other = np.zeros((10, 10), dtype=bool)
    other[0, 0] = other[9, 9] = True
    other[2:6, 2:6] = True
    labels = lesion_labels(other, [(1, (0, 0, 9, 9)), (3, (1, 1, 6, 6))])
    assert labels[0, 0] == labels[9, 9] == 1 and (labels[2:6, 2:6] == 3).all()


def test_a_lesion_that_a_resized_grid_joined_to_another_takes_its_box() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:3, 1:3] = True
    mask[3, 3] = True  # one component here; two lesions on the model's grid
    labels = lesion_labels(mask, [(1, (1, 1, 2, 2)), (2, (3, 3, 3, 3))])
    assert labels[3, 3] == 2 and (labels[1:3, 1:3] == 1).all()


def test_uids_are_derived_from_the_job_and_differ_by_part() -> None:
    seg, sr = report_uid(JOB, "seg"), report_uid(JOB, "sr")
    assert seg == report_uid(JOB, "seg") and seg != sr and seg.startswith("2.25.")
    assert len(seg) <= 64 and report_uid("f" * 32, "seg") != seg
    assert tracking_uid(JOB, 1) != tracking_uid(JOB, 2)


def test_outputs_are_kept_by_name_and_cleared_with_the_outputs(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    store.create(JOB)
    assert store.read_output(JOB, "seg.dcm") is None
    store.write_output(JOB, "seg.dcm", b"DICM")
    assert store.read_output(JOB, "seg.dcm") == b"DICM"
    with pytest.raises(ValueError):
        store.write_output(JOB, "../result.json", b"x")
    store.clear_outputs(JOB)
    assert store.read_output(JOB, "seg.dcm") is None

"""The bone gate's numpy arithmetic: parameters, region, and the gated packed mask."""

from __future__ import annotations

import numpy as np
import pytest

from api.inference.bone_gate import BoneGate, bone_region, gate_packed_mask

GATE = BoneGate(200, 24, 3)


def vertebra_and_soft_tissue() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 512x512 slice: soft-tissue body, a cortical ring round osteoporotic marrow, and two
    100 HU blobs (one inside the ring, one in soft tissue); returns HU and the two blobs."""
    yy, xx = np.mgrid[0:512, 0:512]
    hounsfield = np.full((512, 512), -1000, dtype=np.int16)
    hounsfield[((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 <= 1] = 40
    radius = np.hypot(yy - 330, xx - 256)
    hounsfield[radius <= 34] = 1000  # cortex
    hounsfield[radius <= 28] = 120  # osteoporotic marrow: below the gate's threshold
    in_bone = np.hypot(yy - 335, xx - 250) <= 6
    in_soft_tissue = np.hypot(yy - 150, xx - 256) <= 6
    hounsfield[in_bone | in_soft_tissue] = 100
    return hounsfield[None], in_bone, in_soft_tissue


def test_parse_and_format_round_trip() -> None:
    assert BoneGate.parse("200:24:3") == GATE
    assert str(GATE) == "200:24:3"
    assert BoneGate.parse("") is None and BoneGate.parse("off") is None
    with pytest.raises(ValueError, match="HU:CLOSE:DILATE"):
        BoneGate.parse("200:24")
    with pytest.raises(ValueError, match="radii"):
        BoneGate(200, -1, 3)
    with pytest.raises(ValueError, match="threshold_hu"):
        BoneGate(4000, 24, 3)


def test_only_the_blob_inside_the_shell_is_reported() -> None:
    hounsfield, in_bone, in_soft_tissue = vertebra_and_soft_tissue()
    region = bone_region(hounsfield, GATE)[0]
    # The closing covers the marrow inside the shell, though it is below the threshold.
    assert region[np.hypot(*np.mgrid[0:512, 0:512] - np.array([[[330]], [[256]]])) <= 34].all()
    assert not region[in_soft_tissue].any()
    packed = np.packbits((in_bone | in_soft_tissue)[None], axis=-1)
    gated = gate_packed_mask(packed, hounsfield, GATE)
    assert np.array_equal(np.unpackbits(gated, axis=-1).astype(bool)[0], in_bone)
    assert gate_packed_mask(packed, hounsfield, None) is packed


def test_region_is_threshold_closed_then_dilated_by_squares() -> None:
    hounsfield = np.zeros((1, 64, 64), dtype=np.int16)
    hounsfield[0, 10, 10] = 300  # one bright pixel: a (2*3+1)-pixel square after dilation
    hounsfield[0, 40:50, 0] = 300  # a bar on the border: the erosion must not eat it
    hounsfield[0, 30, 30] = 199  # just below the threshold
    region = bone_region(hounsfield, BoneGate(200, 5, 3))[0]
    expected = np.zeros((64, 64), dtype=bool)
    expected[7:14, 7:14] = True
    expected[37:53, 0:4] = True
    assert np.array_equal(region, expected)
    assert np.array_equal(bone_region(hounsfield, BoneGate(200, 0, 0))[0], hounsfield[0] >= 200)

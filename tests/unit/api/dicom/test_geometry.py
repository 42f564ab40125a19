"""PlaneGeometry and the fit of stored slices into the model's square input."""

from __future__ import annotations

import numpy as np
import pytest

from api.dicom.geometry import PlaneGeometry, ResizeMapping, resize_to_model


def test_normal_is_row_cross_column() -> None:
    axial = PlaneGeometry((0, 0, 0), (1, 0, 0), (0, 1, 0), (0.5, 0.5), 4, 4)
    flipped = PlaneGeometry((0, 0, 0), (1, 0, 0), (0, -1, 0), (0.5, 0.5), 4, 4)
    sagittal = PlaneGeometry((0, 0, 0), (0, 1, 0), (0, 0, -1), (0.5, 0.5), 4, 4)
    assert axial.normal == (0.0, 0.0, 1.0)
    assert flipped.normal == (0.0, 0.0, -1.0)
    assert sagittal.normal == (-1.0, 0.0, 0.0)


def test_patient_point_uses_row_spacing_along_column_cosine() -> None:
    # PixelSpacing is (between rows, between columns): moving one row steps 2.0 mm along
    # the column cosine, one column 0.5 mm along the row cosine (PS3.3 C.7.6.2.1.1).
    geometry = PlaneGeometry((10.0, 20.0, 30.0), (1, 0, 0), (0, 1, 0), (2.0, 0.5), 8, 8)
    assert geometry.patient_point(0, 0) == (10.0, 20.0, 30.0)
    assert geometry.patient_point(3, 0) == (10.0, 26.0, 30.0)
    assert geometry.patient_point(0, 4) == (12.0, 20.0, 30.0)


def test_patient_point_on_a_tilted_plane() -> None:
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    geometry = PlaneGeometry((0, 0, 0), (1, 0, 0), (0, c, -s), (1.0, 1.0), 4, 4)
    point = geometry.patient_point(2, 0)
    assert point == pytest.approx((0.0, 2 * c, -2 * s))
    assert geometry.normal == pytest.approx((0.0, s, c))


def test_square_512_passes_through_untouched() -> None:
    slice_ = np.arange(512 * 512, dtype=np.int32).reshape(512, 512).astype(np.int16)
    fitted, mapping = resize_to_model(slice_, 512)
    assert mapping.is_identity
    assert fitted is slice_
    assert mapping.scale == 1.0 and mapping.offset == (0.0, 0.0)
    mask = np.random.default_rng(0).random((512, 512)) > 0.5
    np.testing.assert_array_equal(mapping.mask_to_original(mask), mask)


def test_upsampling_keeps_int16_and_pixel_centres() -> None:
    ramp = (np.arange(256, dtype=np.int16) * 4)[None, :].repeat(256, axis=0)
    fitted, mapping = resize_to_model(ramp, 512)
    assert fitted.dtype == np.int16 and fitted.shape == (512, 512)
    assert mapping.scale == 2.0 and mapping.offset == (0.0, 0.0)
    # Model column c samples original column (c + 0.5) / 2 - 0.5, linearly interpolated.
    columns = np.arange(512)
    source = np.clip((columns + 0.5) / 2 - 0.5, 0, 255)
    np.testing.assert_array_equal(fitted[100], np.rint(source * 4).astype(np.int16))


def test_non_square_is_padded_with_air_and_centred() -> None:
    image = np.full((300, 200), 500, dtype=np.int16)
    fitted, mapping = resize_to_model(image, 512)
    assert mapping.scale == pytest.approx(512 / 300)
    assert mapping.offset == (0.0, 85.0)
    inside = fitted[:, 86:426]
    assert (inside == 500).all()
    assert (fitted[:, :85] == -1024).all() and (fitted[:, 427:] == -1024).all()


def test_custom_pad_value() -> None:
    fitted, _ = resize_to_model(np.zeros((512, 256), dtype=np.int16), 512, pad_value=-2000)
    assert (fitted[:, :128] == -2000).all() and (fitted[:, 128:384] == 0).all()


def test_downsampling_a_large_slice() -> None:
    image = np.zeros((1024, 1024), dtype=np.int16)
    image[:512] = 1000
    fitted, mapping = resize_to_model(image, 512)
    assert mapping.scale == 0.5
    assert (fitted[:255] == 1000).all() and (fitted[257:] == 0).all()


@pytest.mark.parametrize("shape", [(512, 512), (256, 256), (300, 200), (600, 512), (128, 700)])
def test_to_model_and_to_original_are_inverse(shape: tuple[int, int]) -> None:
    mapping = ResizeMapping.fit(shape, 512)
    rows = np.array([0.0, 10.5, shape[0] - 1.0])
    columns = np.array([0.0, 3.25, shape[1] - 1.0])
    back = mapping.to_original(*mapping.to_model(rows, columns))
    np.testing.assert_allclose(back[0], rows, atol=1e-9)
    np.testing.assert_allclose(back[1], columns, atol=1e-9)
    r, c = mapping.to_original(7.0, 9.0)
    assert isinstance(r, float) and isinstance(c, float)


def test_mask_to_original_inverts_an_upsampled_block() -> None:
    mapping = ResizeMapping.fit((256, 256), 512)
    mask = np.zeros((512, 512), dtype=bool)
    mask[100:140, 200:260] = True  # original rows 50..69, columns 100..129
    original = mapping.mask_to_original(mask)
    expected = np.zeros((256, 256), dtype=bool)
    expected[50:70, 100:130] = True
    np.testing.assert_array_equal(original, expected)


def test_mask_to_original_ignores_the_padding() -> None:
    mapping = ResizeMapping.fit((512, 256), 512)
    mask = np.zeros((512, 512), dtype=bool)
    mask[:, :128] = True  # all padding
    mask[10, 200] = True  # original (10, 72)
    original = mapping.mask_to_original(mask)
    assert original.shape == (512, 256)
    assert np.argwhere(original).tolist() == [[10, 72]]


def test_mask_to_original_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError):
        ResizeMapping.fit((256, 256), 512).mask_to_original(np.zeros((256, 256), dtype=bool))

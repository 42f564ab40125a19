"""Training with slice context (2.5D): banks of planes blended as the gateway plans them,
crops that move every plane together, and a context model trained end to end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from api.inference.contract import BONE_WINDOW, Window
from api.inference.processing import window_channels
from export.model import ModelConfig
from export.model.checkpoint import load_checkpoint
from export.model.planes import plane_channels
from export.sources.planes import volume_planes
from export.sources.slices import LabelledVolume, phantom_volume
from export.training.augment import AugmentConfig, augmented_crop
from export.training.bank import SliceBank, select_slices
from export.training.config import DataConfig, OptimConfig, TrainConfig
from export.training.data import PlaneSpec, build_training_bank, build_validation_bank
from export.training.datasets import BalancedSampler, BatchSpec, training_batch

MARROW = Window(level=150.0, width=500.0)
WINDOWS = (BONE_WINDOW, MARROW)
# Slices 2 mm apart, so planes 2.5 mm apart fall between slices and must be blended.
SMALL_PHANTOM = {
    "size": 128,
    "slices": 8,
    "n_lesions": 2,
    "lesion_site": "vertebral_body",
    "slice_thickness_mm": 2.0,
    "slice_spacing_mm": 2.0,
    "contrast": "none",
}


@pytest.fixture(scope="module")
def volume() -> LabelledVolume:
    return phantom_volume(5, SMALL_PHANTOM)


def _direct_planes(volume: LabelledVolume, index: int, context: int,
                   spacing: float) -> np.ndarray:
    """The planes of slice ``index`` computed here, in float64, without the gateway's plan."""
    z = volume.z
    planes = []
    for k in range(-context, context + 1):
        target = float(np.clip(z[index] + k * spacing, z[0], z[-1]))
        upper = int(np.searchsorted(z, target - 1e-6))
        lower = max(upper - 1, 0)
        if abs(z[upper] - target) < 1e-6:
            lower = upper
        share = 0.0 if lower == upper else (target - z[lower]) / (z[upper] - z[lower])
        mixed = (1 - share) * volume.hounsfield[lower] + share * volume.hounsfield[upper]
        planes.append(np.rint(mixed))
    return np.stack(planes)


def test_phantom_volumes_know_where_their_slices_lie(volume: LabelledVolume) -> None:
    np.testing.assert_allclose(np.diff(volume.z), 2.0)
    unknown = LabelledVolume("u", volume.hounsfield[:3], volume.labels[:3])
    np.testing.assert_allclose(unknown.z, [0.0, 2.5, 5.0])  # evenly spaced when unknown
    with pytest.raises(ValueError, match="ascend"):
        LabelledVolume("d", volume.hounsfield[:3], volume.labels[:3], np.array([0.0, 2.0, 2.0]))


@pytest.mark.parametrize("context", [1, 2])
def test_a_slices_planes_are_the_gateways_blends_of_its_neighbours(
    volume: LabelledVolume, context: int
) -> None:
    index = np.arange(len(volume.z))  # the ends too, where planes are clamped
    planes = volume_planes(volume, index, context, 2.5)
    assert planes.shape == (len(index), 2 * context + 1, 512, 512)
    assert planes.dtype == np.int16
    for i in index:
        expected = _direct_planes(volume, int(i), context, 2.5)
        difference = np.abs(planes[i].astype(np.int32) - expected)
        # float32 against float64 rounding: a pixel exactly between two HU may differ by 1.
        assert difference.max() <= 1
        assert (difference == 0).mean() > 0.999
        np.testing.assert_array_equal(planes[i, context], volume.hounsfield[i])
    # At 2 mm slices a plane 2.5 mm away really blends (a quarter of the next slice over).
    blended = planes[3, context + 1].astype(np.int32)
    assert not np.array_equal(blended, volume.hounsfield[4])
    # The first slice's lower planes stop at the series' end: the first slice itself.
    np.testing.assert_array_equal(planes[0, 0], volume.hounsfield[0])


def test_context_0_gives_todays_bank_bit_for_bit() -> None:
    data = DataConfig(
        phantom_seeds=(5, 7), phantom_overrides=SMALL_PHANTOM, positives_per_volume=3,
        negatives_per_volume=2, workers=0,
    )
    bank = build_training_bank(data, 11)
    # Today's bank, as it was built: each phantom's chosen slices, copied.
    volumes = [phantom_volume(seed, SMALL_PHANTOM) for seed in (5, 6)]
    chosen = [select_slices(v.labels, np.random.default_rng([11, seed]), 3, 2)
              for v, seed in zip(volumes, (5, 6), strict=True)]
    hounsfield = np.concatenate([v.hounsfield[i] for v, i in zip(volumes, chosen, strict=True)])
    labels = np.concatenate([v.labels[i] for v, i in zip(volumes, chosen, strict=True)])
    assert bank.planes.shape == (len(hounsfield), 1, 512, 512)
    assert bank.planes.tobytes() == hounsfield.tobytes()
    assert bank.hounsfield.tobytes() == hounsfield.tobytes()
    assert bank.labels.tobytes() == labels.tobytes()
    # And a 2D model's input from it is window_channels' as before.
    assert plane_channels(bank.planes[:2], WINDOWS).tobytes() == window_channels(
        hounsfield[:2], WINDOWS).tobytes()


def test_every_plane_of_a_crop_takes_the_same_geometry_and_its_own_noise(
    volume: LabelledVolume,
) -> None:
    same = np.repeat(volume.hounsfield[3][None], 3, axis=0)
    geometry_only = AugmentConfig(max_noise_hu=0.0, max_hu_shift=0.0, flip_left_right=1.0)
    crops, label = augmented_crop(same, volume.labels[3], (300.0, 256.0), 96,
                                  np.random.default_rng(2), geometry_only)
    assert crops.shape == (3, 96, 96)
    np.testing.assert_array_equal(crops[0], crops[1])
    np.testing.assert_array_equal(crops[0], crops[2])
    # One plane draws what one slice draws: a 2D model's crops are today's.
    noisy = AugmentConfig(max_noise_hu=20.0, max_hu_shift=15.0)
    one, one_label = augmented_crop(same[:1], volume.labels[3], (300.0, 256.0), 96,
                                    np.random.default_rng(4), noisy)
    flat, flat_label = augmented_crop(same[0], volume.labels[3], (300.0, 256.0), 96,
                                      np.random.default_rng(4), noisy)
    np.testing.assert_array_equal(one[0], flat)
    np.testing.assert_array_equal(one_label, flat_label)
    three, _ = augmented_crop(same, volume.labels[3], (300.0, 256.0), 96,
                              np.random.default_rng(4), noisy)
    difference = three[1].astype(np.float64) - three[2]
    assert difference.std() > 1.0  # each plane its own noise
    assert abs(difference.mean()) < 1.0  # one HU shift for the whole sample


def _context_config(steps: int) -> TrainConfig:
    return TrainConfig(
        seed=3,
        model=ModelConfig(depth=18, width=0.125, in_channels=6, context=1,
                          context_spacing_mm=2.5),
        windows=WINDOWS,
        batch=BatchSpec(batch_size=2, crop=64, positive_fraction=0.5),
        optim=OptimConfig(steps=steps, lr=3e-3, warmup_steps=1),
        validate_every=steps,
        checkpoint_every=1000,
        threads=1,
    )


def test_a_context_model_trains_on_two_phantoms_and_records_its_context(
    tmp_path: Path,
) -> None:
    from export.training.loop import train

    config = _context_config(3)
    planes = PlaneSpec.of(config.model)
    data = DataConfig(
        phantom_seeds=(5, 7), phantom_overrides=SMALL_PHANTOM, positives_per_volume=3,
        negatives_per_volume=2, validation_seeds=(7, 8), validation_overrides=SMALL_PHANTOM,
        validation_positives=2, validation_negatives=1, workers=0,
    )
    bank = build_training_bank(data, config.seed, planes=planes)
    validation = build_validation_bank(data, config.seed, planes)
    assert bank.planes.shape[1:] == (3, 512, 512) and validation.planes.shape[1] == 3
    assert bank.positive_count > 0
    images, labels = training_batch(
        bank, BalancedSampler(bank.positive, 0.5), np.random.default_rng(0), config.batch,
        AugmentConfig.none(), config.windows,
    )
    assert images.shape == (2, 6, 64, 64) and labels.shape == (2, 1, 64, 64)
    state = train(config, bank, validation, tmp_path / "context.pt", progress=False)
    assert state.step == 3 and state.validation and state.validation[-1]["step"] == 3
    saved = load_checkpoint(tmp_path / "context.pt")
    assert (saved.config.context, saved.config.context_spacing_mm) == (1, 2.5)
    assert saved.config.in_channels == 6 and saved.windows == WINDOWS
    # A 2D bank is refused by a context model, not trained on with the wrong inputs.
    flat = SliceBank(bank.hounsfield, bank.labels, bank.names)
    with pytest.raises(ValueError, match="plane"):
        train(config, flat, None, tmp_path / "flat.pt", progress=False)


def test_the_configs_channels_must_be_planes_times_windows() -> None:
    config = _context_config(1)
    with pytest.raises(ValueError, match="in_channels must be 6"):
        replace(config, model=replace(config.model, in_channels=3))  # one window's planes
    with pytest.raises(ValueError, match="not a multiple of the 3 planes"):
        replace(config.model, in_channels=2)
    with pytest.raises(ValueError, match="context must be"):
        ModelConfig(context=3, in_channels=7)


def test_the_demo_context_config_is_demo_plus_context() -> None:
    root = Path(__file__).resolve().parents[4] / "export" / "configs"
    demo = TrainConfig.load(root / "demo.json").to_dict()
    context = TrainConfig.load(root / "demo-context.json").to_dict()
    assert context["model"].pop("context") == 1
    assert context["model"].pop("context_spacing_mm") == 2.5
    assert context["model"].pop("in_channels") == 6
    demo["model"].pop("context"), demo["model"].pop("context_spacing_mm")
    demo["model"].pop("in_channels")
    assert context.pop("version") != demo.pop("version")
    assert context == demo


def test_joining_a_bank_empties_the_list_of_parts_in_order() -> None:
    """Each part is let go once copied, so the parts and the bank are never all in memory."""
    rng = np.random.default_rng(1)
    parts = [
        SliceBank(rng.integers(-1000, 1000, (n, 3, 8, 8), dtype=np.int16),
                  (rng.random((n, 8, 8)) < 0.1).astype(np.uint8), [f"v{i}:{k}" for k in range(n)])
        for i, n in enumerate((2, 0, 3, 1))
    ]
    planes = np.concatenate([p.planes for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    bank = SliceBank.concatenate(parts)
    assert parts == []
    assert bank.planes.tobytes() == planes.tobytes()
    assert bank.labels.tobytes() == labels.tobytes()
    assert bank.names == ["v0:0", "v0:1", "v2:0", "v2:1", "v2:2", "v3:0"]
    with pytest.raises(ValueError, match="no slices"):
        SliceBank.concatenate([])

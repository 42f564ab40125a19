"""The training configuration: one JSON document, saved whole with every checkpoint.

Paths inside it are relative to the working directory the command runs in (the
repository root for the documented commands).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from api.inference.contract import BONE_WINDOW, DEFAULT_THRESHOLD, Window, parse_windows
from export.model import ModelConfig
from export.training.augment import AugmentConfig
from export.training.calibration import MAX_CALIBRATION_LOGIT
from export.training.datasets import BatchSpec
from export.training.hard_negatives import MiningConfig
from export.training.losses import LossConfig

Schedule = Literal["cosine", "onecycle", "constant"]
Precision = Literal["fp32", "bf16"]
# Held-out evaluation draws phantoms from this seed upwards; training must stay below it.
EVALUATION_SEED_START = 100_000


@dataclass(frozen=True)
class DataConfig:
    """Which labelled CT to learn from and how many slices of each volume go in the bank."""

    phantom_seeds: tuple[int, int] = (1, 65)  # [start, stop)
    phantom_overrides: dict[str, Any] = field(default_factory=dict)
    negative_phantom_seeds: tuple[int, int] = (0, 0)  # phantoms made without lesions
    dicom_dirs: tuple[str, ...] = ()  # DICOM series with DICOM SEG masks
    nifti_dirs: tuple[str, ...] = ()  # *_image.nii.gz/*_mask.nii.gz or images/ + labels/
    negative_dirs: tuple[str, ...] = ()  # DICOM series known to hold no metastasis
    negative_dir_repeat: int = 1  # each of their slices enters the bank this many times
    positives_per_volume: int = 12
    negatives_per_volume: int = 6
    validation_seeds: tuple[int, int] = (90_000, 90_004)
    # Validation phantoms are drawn as the seed alone makes them (as held-out evaluation
    # draws them) unless these are set: phantom_overrides shape the training data only.
    validation_overrides: dict[str, Any] = field(default_factory=dict)
    validation_positives: int = 16
    validation_negatives: int = 16
    workers: int = 2  # processes generating phantoms while the bank is built

    def __post_init__(self) -> None:
        for name in ("phantom_seeds", "negative_phantom_seeds", "validation_seeds"):
            start, stop = getattr(self, name)
            if not 0 <= start <= stop:
                raise ValueError(f"{name} must be [start, stop) with 0 <= start <= stop")
            if stop > EVALUATION_SEED_START:
                raise ValueError(
                    f"{name} reaches {stop - 1}: seeds >= {EVALUATION_SEED_START} are held out "
                    "for evaluation"
                )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    steps: int = 3000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: Schedule = "cosine"
    warmup_steps: int = 150
    final_lr_fraction: float = 0.02
    grad_clip: float = 5.0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("steps >= 1, lr > 0 and warmup_steps >= 0 are required")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; round-trips through JSON."""

    seed: int = 1
    version: str = "dev"
    model: ModelConfig = field(default_factory=ModelConfig)
    windows: tuple[Window, ...] = (BONE_WINDOW,)
    threshold: float = DEFAULT_THRESHOLD
    data: DataConfig = field(default_factory=DataConfig)
    batch: BatchSpec = field(default_factory=BatchSpec)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    validate_every: int = 250
    checkpoint_every: int = 500
    threads: int = 2
    # "bf16": forward passes of training steps and mining run under bfloat16 autocast
    # (weights, optimiser, loss, validation and calibration stay float32). About 1.9x
    # faster convolutions on CPUs with AVX512-BF16 or AMX; elsewhere slower than "fp32".
    precision: Precision = "fp32"
    # At the end, lower the threshold as far as validation PPV stays >= this (None: keep).
    calibrate_min_ppv: float | None = None
    # With it, the one-sided Wilson lower bound of the validation PPV at this confidence
    # must reach calibrate_min_ppv, not just the PPV itself: a threshold at the edge of
    # the point estimate lands below it on unseen data about half the time.
    calibrate_confidence: float | None = None
    calibration_floor: float = 0.2
    # With calibrate_min_ppv: fit P(true lesion | component peak) on validation and fold it
    # into the last layer, so served probabilities are calibrated (not all 1.0).
    calibrate_scores: bool = False

    def __post_init__(self) -> None:
        # The network's first convolution takes every plane through every window.
        if self.model.in_channels != len(self.windows) * self.model.planes:
            raise ValueError(
                f"model.in_channels must be {len(self.windows) * self.model.planes} "
                f"({len(self.windows)} window(s) x {self.model.planes} plane(s) of context "
                f"{self.model.context}), got {self.model.in_channels}"
            )
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.calibrate_scores and self.calibrate_min_ppv is None:
            raise ValueError(
                "calibrate_scores needs calibrate_min_ppv: the scores are fitted "
                "where the threshold is chosen"
            )
        # Every cut the threshold search tries is at most logit 12; the kept pixels above the
        # floor reproduce the operating curve only for cuts at or above the floor.
        top = 1.0 / (1.0 + math.exp(-MAX_CALIBRATION_LOGIT))
        if not 0 < self.calibration_floor < top:
            raise ValueError(
                f"calibration_floor must be in (0, {top:.6f}), got {self.calibration_floor}"
            )
        if self.calibrate_confidence is not None:
            if self.calibrate_min_ppv is None:
                raise ValueError("calibrate_confidence needs calibrate_min_ppv")
            if not 0.5 <= self.calibrate_confidence < 1:
                raise ValueError(
                    f"calibrate_confidence must be in [0.5, 1), got {self.calibrate_confidence}"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (windows as "LEVEL:WIDTH" strings)."""
        return {
            "seed": self.seed,
            "version": self.version,
            "model": self.model.to_dict(),
            "windows": [str(w) for w in self.windows],
            "threshold": self.threshold,
            "data": _plain(asdict(self.data)),
            "batch": asdict(self.batch),
            "augment": self.augment.to_dict(),
            "loss": self.loss.to_dict(),
            "optim": asdict(self.optim),
            "mining": asdict(self.mining),
            "validate_every": self.validate_every,
            "checkpoint_every": self.checkpoint_every,
            "threads": self.threads,
            "precision": self.precision,
            "calibrate_min_ppv": self.calibrate_min_ppv,
            "calibrate_confidence": self.calibrate_confidence,
            "calibration_floor": self.calibration_floor,
            "calibrate_scores": self.calibrate_scores,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are an error."""
        _reject_unknown(cls, data, "train config")
        values: dict[str, Any] = {k: v for k, v in data.items() if not k.startswith("_")}
        if "model" in values:
            values["model"] = ModelConfig.from_dict(values["model"])
        if "windows" in values:
            values["windows"] = parse_windows(",".join(values["windows"]))
        if "data" in values:
            values["data"] = _dataclass_from(DataConfig, values["data"])
        if "batch" in values:
            values["batch"] = _dataclass_from(BatchSpec, values["batch"])
        if "augment" in values:
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        if "loss" in values:
            values["loss"] = LossConfig.from_dict(values["loss"])
        if "optim" in values:
            values["optim"] = _dataclass_from(OptimConfig, values["optim"])
        if "mining" in values:
            values["mining"] = _dataclass_from(MiningConfig, values["mining"])
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON config file (keys starting with "_" are comments)."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def _reject_unknown(cls: Any, data: dict[str, Any], what: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(k for k in set(data) - known if not k.startswith("_"))
    if unknown:
        raise ValueError(f"unknown {what} keys: {unknown}")


def _dataclass_from(cls: Any, data: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from JSON, turning lists back into tuples."""
    _reject_unknown(cls, data, cls.__name__)
    values = {
        k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if not k.startswith("_")
    }
    return cls(**values)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

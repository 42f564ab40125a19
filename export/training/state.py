"""What a training run carries from step to step, and its checkpoints.

Checkpoints carry the model, its window and threshold, the whole training config, the
optimiser state and the metrics so far, so a run resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.model import build_model
from export.model.checkpoint import load_checkpoint, save_checkpoint
from export.training.config import TrainConfig


@dataclass
class TrainState:
    """What a run carries from step to step and into its checkpoints."""

    model: nn.Module
    optimizer: torch.optim.AdamW
    step: int = 0
    losses: list[float] = field(default_factory=list)  # current window
    loss_curve: list[list[float]] = field(default_factory=list)  # [step, mean loss]
    validation: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    threshold: float | None = None  # the calibrated operating threshold, once chosen
    calibration: dict[str, float] | None = None

    def metrics(self) -> dict[str, Any]:
        """The metrics recorded in a checkpoint."""
        steps_per_second = self.step / self.train_seconds if self.train_seconds else 0.0
        return {
            "step": self.step,
            "loss_curve": self.loss_curve,
            "validation": self.validation,
            "latest_validation": self.validation[-1] if self.validation else None,
            "train_seconds": round(self.train_seconds, 1),
            "steps_per_second": round(steps_per_second, 3),
            "calibration": self.calibration,
        }


def new_state(config: TrainConfig) -> TrainState:
    """A freshly initialised model and optimiser, seeded by the run seed."""
    torch.manual_seed(config.seed)
    model = build_model(config.model)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    return TrainState(model, optimizer)


def resume_state(config: TrainConfig, path: Path) -> TrainState:
    """Model, optimiser, step and metrics from a checkpoint this loop wrote."""
    checkpoint = load_checkpoint(path)
    if checkpoint.config != config.model:
        raise ValueError(f"{path} was trained with a different model config")
    state = new_state(config)
    state.model.load_state_dict(checkpoint.model.state_dict())
    if checkpoint.optimizer_state is None or checkpoint.step is None:
        raise ValueError(f"{path} has no optimiser state or step: not a resumable checkpoint")
    state.optimizer.load_state_dict(checkpoint.optimizer_state)
    state.step = int(checkpoint.step)
    metrics = checkpoint.metrics or {}
    state.loss_curve = [list(point) for point in metrics.get("loss_curve", [])]
    state.validation = list(metrics.get("validation", []))
    state.train_seconds = float(metrics.get("train_seconds", 0.0))
    return state


def save_state(path: Path, config: TrainConfig, state: TrainState) -> Path:
    """Write a resumable checkpoint of ``state`` to ``path``."""
    return save_checkpoint(
        path,
        state.model,
        config.model,
        windows=config.windows,
        threshold=config.threshold if state.threshold is None else state.threshold,
        version=config.version,
        train_config=config.to_dict(),
        metrics=state.metrics(),
        optimizer_state=state.optimizer.state_dict(),
        step=state.step,
    )

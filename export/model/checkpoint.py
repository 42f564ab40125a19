"""Model checkpoints that carry their own window and threshold.

A checkpoint records the architecture, the weights, and the preprocessing the weights were
trained with (the CT windows, one per input channel of each plane) and the operating
threshold, so export and serving read them from the same file training wrote and cannot
disagree. A model with slice context records it in its config (``context``,
``context_spacing_mm``: the planes each side and their spacing).
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from api.inference.bone_gate import BoneGate
from api.inference.contract import Window, format_windows, parse_windows
from export.model import ModelConfig, build_model

CHECKPOINT_FORMAT = "bonemets-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``model`` is on the CPU in eval mode."""

    model: nn.Module
    config: ModelConfig
    windows: tuple[Window, ...]
    threshold: float
    version: str
    train_config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    optimizer_state: dict[str, Any] | None = None
    epoch: int | None = None
    step: int | None = None
    created: str | None = None
    bone_gate: BoneGate | None = None


def _validate(config: ModelConfig, windows: tuple[Window, ...], threshold: float) -> None:
    if len(windows) * config.planes != config.in_channels:
        raise ValueError(
            f"{len(windows)} window(s) x {config.planes} plane(s) for a model with "
            f"{config.in_channels} input channel(s)"
        )
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")


def _plain(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON-shaped copy (paths and other objects become strings), loadable with weights_only."""
    if data is None:
        return None
    plain: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return plain


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: ModelConfig,
    *,
    windows: tuple[Window, ...],
    threshold: float,
    version: str,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    epoch: int | None = None,
    step: int | None = None,
    bone_gate: BoneGate | None = None,
) -> Path:
    """Write ``model``'s weights with its config, windows and threshold; returns the path."""
    _validate(config, windows, threshold)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "windows": format_windows(windows),
        "threshold": float(threshold),
        "bone_gate": "" if bone_gate is None else str(bone_gate),
        "version": str(version),
        "train_config": _plain(train_config),
        "metrics": _plain(metrics),
        "optimizer_state": optimizer_state,
        "epoch": epoch,
        "step": step,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch_version": str(torch.__version__),
    }
    # Write then rename, so a crash mid-save never leaves a truncated checkpoint behind.
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; the model comes back in eval mode."""
    # weights_only: a checkpoint is data, and unpickling arbitrary objects would run code.
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError) as exc:
        # torch's own words for "not a torch file" run to a page of advice on weights_only.
        raise ValueError(
            f"{path} is not a bonemets checkpoint (torch cannot read it as a weights file)"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a bonemets checkpoint")
    if payload.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {payload.get('format_version')}")
    config = ModelConfig.from_dict(payload["model_config"])
    windows = parse_windows(payload["windows"])
    threshold = float(payload["threshold"])
    _validate(config, windows, threshold)
    model = build_model(config)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return Checkpoint(
        model=model,
        config=config,
        windows=windows,
        threshold=threshold,
        version=str(payload["version"]),
        train_config=payload.get("train_config"),
        metrics=payload.get("metrics"),
        optimizer_state=payload.get("optimizer_state"),
        epoch=payload.get("epoch"),
        step=payload.get("step"),
        created=payload.get("created"),
        bone_gate=BoneGate.parse(payload.get("bone_gate", "")),
    )

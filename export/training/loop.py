"""The training loop: balanced crops, Dice + BCE, AdamW with warmup and cosine decay.

Every step draws its batch from a generator seeded by (run seed, step), and reseeds torch
the same way, so a run resumed from a checkpoint (:mod:`export.training.state`) sees
exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from export.training.bank import SliceBank
from export.training.calibration import calibrate
from export.training.config import OptimConfig, TrainConfig
from export.training.datasets import BalancedSampler, training_batch
from export.training.hard_negatives import HardNegatives, mine_false_positives
from export.training.losses import SegmentationLoss
from export.training.prediction import autocast
from export.training.state import TrainState, new_state, resume_state, save_state
from export.training.validation import validate

logger = logging.getLogger(__name__)

LOSS_WINDOW = 50  # steps averaged into one point of the recorded loss curve


def lr_at(step: int, optim: OptimConfig) -> float:
    """Learning rate for ``step`` (0-based): linear warmup, then the configured decay."""
    final = optim.lr * optim.final_lr_fraction
    if optim.schedule == "onecycle":
        # One cycle: a cosine rise from lr/25 over the first 30 % (warmup_steps unused),
        # then a cosine fall.
        peak = max(1, int(0.3 * optim.steps))
        if step < peak:
            start = optim.lr / 25
            return start + (optim.lr - start) * (1 - math.cos(math.pi * step / peak)) / 2
        progress = (step - peak) / max(1, optim.steps - peak)
        return final + (optim.lr - final) * (1 + math.cos(math.pi * min(1.0, progress))) / 2
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return optim.lr
    progress = (step - optim.warmup_steps) / max(1, optim.steps - optim.warmup_steps)
    return final + (optim.lr - final) * (1 + math.cos(math.pi * min(1.0, progress))) / 2


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of one step's batch; also reseeds torch (dropout) for that step."""
    torch.manual_seed(seed * 1_000_003 + step)
    return np.random.default_rng([seed, step])


def train_step(
    state: TrainState,
    config: TrainConfig,
    images: npt.NDArray[np.float32],
    labels: npt.NDArray[np.float32],
    criterion: SegmentationLoss,
) -> float:
    """One optimiser step on one batch; returns the loss."""
    lr = lr_at(state.step, config.optim)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.model.train()
    # NHWC: oneDNN's CPU convolutions run about a quarter faster on it than on NCHW.
    with autocast(config.precision):
        logits = state.model(
            torch.from_numpy(images).contiguous(memory_format=torch.channels_last)
        )
    loss = criterion(logits.float(), torch.from_numpy(labels))
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.optim.grad_clip > 0:
        nn.utils.clip_grad_norm_(state.model.parameters(), config.optim.grad_clip)
    state.optimizer.step()
    return float(loss.detach())


def record_loss(state: TrainState, loss: float) -> None:
    """Keep the loss; close a point of the loss curve every LOSS_WINDOW steps."""
    state.losses.append(loss)
    if len(state.losses) >= LOSS_WINDOW:
        state.loss_curve.append([float(state.step), float(np.mean(state.losses))])
        state.losses.clear()


def periodic_path(out: Path) -> Path:
    """Where the periodic (resumable) checkpoint of a run writing ``out`` goes."""
    return out.with_name(out.stem + ".last" + out.suffix)


def train(
    config: TrainConfig,
    bank: SliceBank,
    validation: SliceBank | None,
    out: Path,
    *,
    resume: Path | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainState:
    """Train until ``config.optim.steps``; checkpoints to ``out`` (and ``<out>.last``).

    ``on_step(step, loss)`` is called after every step (step counts from 1).
    """
    _check_planes(config, bank, validation)
    state = _start(config, resume)
    sampler = BalancedSampler(bank.positive, config.batch.positive_fraction)
    criterion = SegmentationLoss(config.loss)
    bar = _progress_bar(config.optim.steps, state.step, progress)
    postfix: dict[str, str] = {}
    hard: HardNegatives | None = None
    while state.step < config.optim.steps:
        began = time.perf_counter()
        if config.mining.due(state.step, hard is not None):
            hard = mine(state, config, bank)
            postfix["hard"] = str(len(hard))
        rng = step_rng(config.seed, state.step)
        images, labels = training_batch(
            bank, sampler, rng, config.batch, config.augment, config.windows, hard
        )
        loss = train_step(state, config, images, labels, criterion)
        state.step += 1
        state.train_seconds += time.perf_counter() - began
        record_loss(state, loss)
        if on_step is not None:
            on_step(state.step, loss)
        postfix["loss"] = f"{loss:.3f}"
        _after_step(state, config, validation, out, postfix)
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
    bar.close()
    # The trained network as it is, resumable, before calibration may fold scores into it.
    save_state(periodic_path(out), config, state)
    finish(state, config, validation)
    save_state(out, config, state)
    return state


def _check_planes(config: TrainConfig, *banks: SliceBank | None) -> None:
    """A bank must carry the planes the model takes (a bank of a 2D model has one)."""
    for bank in banks:
        if bank is not None and bank.planes.shape[1] != config.model.planes:
            raise ValueError(
                f"the bank holds {bank.planes.shape[1]} plane(s) per slice; model context "
                f"{config.model.context} takes {config.model.planes}"
            )


def _start(config: TrainConfig, resume: Path | None) -> TrainState:
    """Torch's threads, and the state to train: fresh, or resumed from ``resume``."""
    torch.set_num_threads(config.threads)
    if config.precision == "bf16" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        logger.warning(
            "precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); "
            "training runs emulated and slower than fp32"
        )
    state = resume_state(config, resume) if resume else new_state(config)
    state.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack it
    return state


def _progress_bar(total: int, initial: int, progress: bool) -> Any:
    from tqdm import tqdm

    # Not a terminal (nohup, CI): a bar line every 30 s rather than several a second.
    return tqdm(
        total=total,
        initial=initial,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5 if sys.stderr.isatty() else 30.0,
    )


def _after_step(
    state: TrainState,
    config: TrainConfig,
    validation: SliceBank | None,
    out: Path,
    postfix: dict[str, str],
) -> None:
    """Validate and write the periodic checkpoint when their steps come."""
    total = config.optim.steps
    # The last step is validated by finish(), after calibration: not twice.
    last_calibrated = state.step == total and config.calibrate_min_ppv is not None
    if validation is not None and state.step % config.validate_every == 0:
        if not last_calibrated:
            postfix.update(run_validation(state, config, validation))
    if state.step % config.checkpoint_every == 0 and state.step < total:
        save_state(periodic_path(out), config, state)


def mine(state: TrainState, config: TrainConfig, bank: SliceBank) -> HardNegatives:
    """Mine the current model's false positives on the bank (seeded by run seed and step)."""
    rng = np.random.default_rng([config.seed, state.step, 0x4EC])
    hard = mine_false_positives(
        state.model,
        bank,
        config.windows,
        rng,
        config=config.mining,
        step=state.step,
        precision=config.precision,
    )
    logger.info(
        "step %d: %d false positives mined on %d slices",
        state.step,
        len(hard),
        hard.slices_searched,
    )
    return hard


def run_validation(state: TrainState, config: TrainConfig, bank: SliceBank) -> dict[str, str]:
    """Score the model on the validation slices, record and log it; returns bar fields."""
    threshold = config.threshold if state.threshold is None else state.threshold
    scores = validate(state.model, bank, config.windows, threshold)
    state.validation.append({"step": float(state.step), **scores})
    logger.info("step %d validation %s", state.step, _format(scores))
    return {
        "dice": f"{scores['dice']:.2f}",
        "sens": f"{scores['sensitivity']:.2f}",
        "ppv": f"{scores['ppv']:.2f}",
    }


def finish(state: TrainState, config: TrainConfig, validation: SliceBank | None) -> None:
    """Close the loss curve; calibrate the threshold and validate once more at the end.

    With ``calibrate_scores`` the score map is folded into the network's last layer, so
    the final checkpoint serves calibrated probabilities; ``<out>.last.pt`` keeps the
    network as trained, to resume from.
    """
    if state.losses:
        state.loss_curve.append([float(state.step), float(np.mean(state.losses))])
        state.losses.clear()
    if validation is None:
        return
    if config.calibrate_min_ppv is not None:
        state.threshold, state.calibration = calibrate(
            state.model,
            validation,
            config.windows,
            config.calibrate_min_ppv,
            config.calibration_floor,
            scores=config.calibrate_scores,
            confidence=config.calibrate_confidence,
        )
        logger.info("calibrated: %s", _format(state.calibration))
    if not state.validation or state.validation[-1]["step"] != state.step or state.calibration:
        run_validation(state, config, validation)


def _format(scores: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in scores.items())

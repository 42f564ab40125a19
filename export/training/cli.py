"""``bonemets train``: train the DeepLabV3+ on phantoms and labelled CT, write a checkpoint."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from export.training.config import TrainConfig

logger = logging.getLogger(__name__)

EPILOG = """examples:
  bonemets train --config export/configs/demo.json --out models/demo.pt
  bonemets train --out models/demo.pt --resume models/demo.last.pt
                                         # continue an interrupted run, same config
  bonemets train --config export/configs/demo.json --out /tmp/smoke.pt --steps 20
  bonemets train --show-config --config export/configs/demo.json
  bonemets train --config export/configs/demo-context.json --out models/context.pt
                                         # 2.5D: each slice with a plane 2.5 mm each side

A periodic checkpoint goes to <out stem>.last.pt every checkpoint_every steps; the final
one to --out. Each holds the whole config, the window and threshold, the optimiser state
and the metrics (loss curve, validation sensitivity/PPV/Dice).
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bonemets train``."""
    parser = subparsers.add_parser(
        "train",
        help="train the segmentation model",
        description="Train the bone-metastasis DeepLabV3+ on random crops of phantoms made on "
        "the fly, DICOM series with SEG masks and NIfTI pairs, as the JSON config says.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="training config JSON (default: built-in)")
    parser.add_argument("--out", type=Path, help="final checkpoint path, e.g. models/demo.pt")
    parser.add_argument("--resume", type=Path, help="continue from this checkpoint")
    parser.add_argument("--steps", type=int, help="override optim.steps (e.g. a smoke run)")
    parser.add_argument("--seed", type=int, help="override the run seed")
    parser.add_argument("--threads", type=int, help="override torch threads (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--show-config", action="store_true", help="print the effective config as JSON and exit"
    )
    parser.set_defaults(func=run)


def effective_config(args: argparse.Namespace) -> TrainConfig:
    """The config file (or defaults) with the command-line overrides applied."""
    from export.training.config import TrainConfig

    if args.config:
        config = TrainConfig.load(args.config)
    elif args.resume:
        config = _checkpoint_config(args.resume)
    else:
        config = TrainConfig()
    if args.steps is not None:
        config = replace(config, optim=replace(config.optim, steps=args.steps))
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    if args.threads is not None:
        config = replace(config, threads=args.threads)
    return config


def _checkpoint_config(path: Path) -> TrainConfig:
    """The training config saved in a checkpoint, so ``--resume`` alone is enough."""
    from export.model.checkpoint import load_checkpoint
    from export.training.config import TrainConfig

    saved = load_checkpoint(path).train_config
    if saved is None:
        raise SystemExit(f"bonemets train: {path} holds no training config; pass --config")
    return TrainConfig.from_dict(saved)


def run(args: argparse.Namespace) -> int:
    """Build the slice banks, train, report the final metrics."""
    config = effective_config(args)
    if args.show_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if args.out is None:
        raise SystemExit("bonemets train: --out is required")
    from tqdm import tqdm

    from export.training.data import (
        PlaneSpec,
        build_training_bank,
        build_validation_bank,
        source_count,
    )
    from export.training.loop import train

    with tqdm(
        total=source_count(config.data), desc="slice bank", unit="volume", disable=args.no_progress
    ) as bar:

        def tick(done: int, found: int) -> None:
            if found:
                bar.total += found
                bar.refresh()
            bar.update(done)

        planes = PlaneSpec.of(config.model)
        bank = build_training_bank(config.data, config.seed, tick, planes)
    validation = build_validation_bank(config.data, config.seed, planes)
    logger.info(
        "bank: %d slices (%d with metastasis); validation: %d slices (%d with metastasis)",
        len(bank),
        bank.positive_count,
        len(validation),
        validation.positive_count,
    )
    state = train(
        config, bank, validation, args.out, resume=args.resume, progress=not args.no_progress
    )
    metrics = state.metrics()
    print(
        json.dumps(
            {
                "checkpoint": str(args.out),
                "step": metrics["step"],
                "steps_per_second": metrics["steps_per_second"],
                "validation": metrics["latest_validation"],
            },
            indent=2,
        )
    )
    return 0

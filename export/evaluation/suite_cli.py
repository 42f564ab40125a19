"""``bonemets evaluate-suite``: a recipe's runs on the four test sets, with the spread."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from export.evaluation.suite import SetResult, SuiteSet

log = logging.getLogger(__name__)

SUITE = Path(__file__).resolve().parent.parent / "configs" / "suite.json"
EPILOG = """examples:
  bonemets evaluate-suite model_repository/                  # the served model, one run
  bonemets evaluate-suite models/demo-s1.pt models/demo-s2.pt --out evaluation/suite
  bonemets evaluate-suite model_repository/ --studies 4      # a quick look: 4 phantoms a set

MODEL: as for `bonemets evaluate` (a checkpoint, an ONNX model or grpc://HOST:PORT/MODEL).
Give one model per training run of the recipe (the same config with different --seed): each
figure is printed for every run with its spread (max - min), and a target is met only where
every run meets it. The sets and targets are in export/configs/suite.json: default,
osteoporotic and normal-variant phantoms drawn by seeds 300000+ that no choice may be made
on, and the corpus' real trunk series. Writes suite.json and suite.md into --out.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate-suite",
        help="a recipe's runs on the four test sets, with run-to-run spread and targets",
        description="Evaluate one or more models (the training runs of one recipe) on the "
        "test sets of export/configs/suite.json and report each figure with its spread.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", metavar="MODEL", nargs="+", help="one model per run")
    parser.add_argument("--suite", type=Path, default=SUITE,
                        help="the sets and targets (default export/configs/suite.json)")
    parser.add_argument("--studies", type=int, default=None, metavar="N",
                        help="only the first N seeds of each phantom set (a quick look, "
                             "not a result)")
    parser.add_argument("--out", type=Path, default=Path("evaluation/suite"),
                        help="output folder (default ./evaluation/suite)")
    parser.add_argument("--batch", type=int, default=8, help="slices per model call (default 8)")
    parser.add_argument("--reporting-floor-mm", type=float, default=None, metavar="MM",
                        help="count only lesions the gateway would report: those at least MM "
                             "long (default the gateway's, BONEMETS_REPORTING_FLOOR_MM's "
                             "default; 0 counts every finding)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from api.config import DEFAULT_FLOOR_MM
    from api.errors import BoneMetsError
    from export.evaluation.suite import load_suite, suite_markdown

    if args.studies is not None and args.studies < 1:
        log.error("--studies must be >= 1, got %d", args.studies)
        return 2
    floor = DEFAULT_FLOOR_MM if args.reporting_floor_mm is None else args.reporting_floor_mm
    if floor < 0:
        log.error("--reporting-floor-mm must be >= 0, got %g", floor)
        return 2
    try:
        sets = load_suite(args.suite, studies=args.studies)
        results = asyncio.run(_evaluate(args.models, sets, args.batch, floor))
    except (ValueError, KeyError, FileNotFoundError, BoneMetsError) as exc:
        log.error("suite failed: %s", exc)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    content = {"suite": str(args.suite), "models": args.models, "studies_per_set": args.studies,
               "reporting_floor_mm": floor, "sets": [r.to_json() for r in results]}
    (args.out / "suite.json").write_text(json.dumps(content, indent=2) + "\n")
    table = f"Reporting floor: {floor:g} mm.\n\n" + suite_markdown(results, args.models)
    (args.out / "suite.md").write_text(table)
    print(table)
    log.info("wrote %s", args.out / "suite.json")
    return 0


async def _evaluate(models: list[str], sets: list[SuiteSet], batch: int,
                    floor_mm: float) -> list[SetResult]:
    """Every model on every set, with a progress bar over studies."""
    from tqdm import tqdm

    from export.evaluation.models import open_model, parse_model_source
    from export.evaluation.run import evaluate_async
    from export.evaluation.suite import set_result

    sources = [parse_model_source(spec) for spec in models]  # every MODEL checked first
    found: list[list[tuple[dict[str, Any], list[dict[str, Any]]]]] = [[] for _ in sets]
    with tqdm(total=len(models) * sum(s.size() for s in sets), unit="study",
              desc="suite") as bar:
        for source in sources:
            model = open_model(source)
            try:
                for i, suite_set in enumerate(sets):
                    bar.set_postfix_str(f"{source}: {suite_set.name}")
                    evaluation = await evaluate_async(model, suite_set.studies(), batch=batch,
                                                      floor_mm=floor_mm,
                                                      on_study=lambda _: bar.update(1))
                    found[i].append((evaluation.metrics, evaluation.per_study))
            finally:
                await model.close()
    return [set_result(s, runs) for s, runs in zip(sets, found, strict=True)]

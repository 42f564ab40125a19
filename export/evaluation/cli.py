"""``bonemets evaluate``: a model's detection metrics on phantoms, DICOM + SEG or real series."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from export.evaluation.gallery import Gallery
    from export.evaluation.metrics import MatchRule
    from export.evaluation.run import Evaluation

log = logging.getLogger(__name__)

EPILOG = """examples:
  bonemets evaluate checkpoints/demo.pt phantoms:100000-100019 --out eval/demo
  bonemets evaluate model_repository/ data/phantoms --match iou:0.1 --per-study
  bonemets evaluate grpc://127.0.0.1:8001/bonemets data/spine-mets-ct-seg --out eval/triton
  bonemets evaluate model_repository/ ../shared/ct-corpus/series --per-study   # no labels:
                                                    # false positives per scan on real CT
  bonemets evaluate model_repository/ phantoms:100000-100019 --gallery 48   # more pictures
  bonemets phantom --out data/mimics --studies 40 --seed 2612 --bone-variants
  bonemets evaluate model_repository/ data/mimics   # + false findings at normal variants
  bonemets evaluate model_repository/ phantoms:100000-100019 --reporting-floor-mm 0
                                                    # every finding, as the gateway with 0

MODEL: a PyTorch checkpoint (*.pt), an ONNX model (model repository folder, one model's
folder, or model.onnx; run in process), or grpc://HOST:PORT/MODEL (a model served by Triton).
DATA: phantoms:START-END (seeds, inclusive, generated in memory; held-out seeds are 100000+),
or a folder: one study (DICOM files, or a dicom/ folder, with an optional DICOM SEG beside
them) or a folder of such study folders. A study without SEG counts as negative.

Sensitivity and PPV are counted per slice, as in the reference paper (Spine 2024): a 2D
connected component of the reference is detected when a predicted component matches it on
the same slice, and a predicted component is true when it matches a reference component.
Lesion-wise (3D) counts use the 3D components. Writes metrics.json, metrics.md, froc.png
and pr.png into --out, and misses.png and false-positives.png: crops of the largest missed
reference components and of the most confident false findings (reference outline green,
the model's red, in the bone window). On phantoms made with --bone-variants it also counts,
per kind, the normal variants (bone islands, haemangiomas, Schmorl's nodes...) it reported.

Predicted lesions whose longest axial diameter is below the gateway's reporting floor
(--reporting-floor-mm, default the gateway's default, 5 mm) are taken out before counting,
decided per 3D lesion by the gateway's own lesion code: the figures are what is served.
Reference lesions are all counted: a real lesion under the floor counts as missed.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="sensitivity, PPV, FP per scan and Dice of a model on labelled CT",
        description="Run a model over phantoms or DICOM studies (with DICOM SEG references) "
        "and report per-slice and lesion-wise detection metrics, Dice, FROC and PR curves.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint, ONNX model or grpc:// URL")
    parser.add_argument("data", metavar="DATA", help="phantoms:START-END or a folder of studies")
    parser.add_argument("--out", type=Path, default=Path("evaluation"),
                        help="output folder (default ./evaluation)")
    parser.add_argument("--match", default="overlap:1", type=_match_rule,
                        help="when a detection matches a lesion: overlap:N (share >= N pixels) "
                             "or iou:T (IoU >= T) (default overlap:1)")
    parser.add_argument("--threshold", type=float, help="mask threshold on the sigmoid "
                        "(default: the model's; checkpoint and ONNX models only)")
    parser.add_argument("--windows", help="LEVEL:WIDTH[,...] input windows for a model.onnx "
                        "without config.pbtxt (default: the model's, else 400:1800)")
    parser.add_argument("--batch", type=int, default=8, help="slices per model call (default 8)")
    parser.add_argument("--per-study", action="store_true",
                        help="also print and write a row per study (always in metrics.json)")
    parser.add_argument("--segments", default=None, metavar="REGEX",
                        help="SEG segments that are metastases, matched against label and "
                             "property type (default: metastasis/lesion/lytic/blastic/tumour...)")
    parser.add_argument("--connectivity", type=int, choices=(4, 8), default=8,
                        help="in-plane connectivity of components (default 8)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per Triton request (default 120)")
    parser.add_argument("--gallery", type=_gallery_size, default=24, metavar="N",
                        help="draw the N largest missed reference components and the N most "
                             "confident false findings into misses.png and false-positives.png "
                             "(default 24; 0: no gallery)")
    parser.add_argument("--reporting-floor-mm", type=_floor_mm, default=None, metavar="MM",
                        help="hide predicted lesions whose longest axial diameter is below MM "
                             "before counting, as the gateway's BONEMETS_REPORTING_FLOOR_MM "
                             "does (default: the gateway's default; 0: count every finding)")
    parser.set_defaults(func=run)


def _floor_mm(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected millimetres, got {text!r}") from None
    if not 0.0 <= value <= 50.0:
        raise argparse.ArgumentTypeError(f"the floor is 0 to 50 mm, got {text}")
    return value


def _gallery_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _match_rule(text: str) -> MatchRule:
    """``overlap:N`` or ``iou:T`` as a MatchRule (argparse type)."""
    from export.evaluation.metrics import MatchRule

    kind, _, value = text.partition(":")
    try:
        if kind == "overlap":
            pixels = float(value or 1)
            if pixels != int(pixels):
                raise ValueError(pixels)
            return MatchRule.overlap(int(pixels))
        if kind == "iou":
            return MatchRule.iou(float(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad match rule {text!r}: {exc}") from exc
    raise argparse.ArgumentTypeError(f"match rule must be overlap:N or iou:T, got {text!r}")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from api.errors import BoneMetsError
    from export.evaluation.mimics import mimics_markdown
    from export.evaluation.report import metrics_markdown, per_study_markdown, write_report

    try:
        evaluation, gallery = asyncio.run(_evaluate(args))
    except (ValueError, FileNotFoundError, BoneMetsError) as exc:
        log.error("evaluation failed: %s", exc)
        return 2
    paths = write_report(evaluation, args.out, per_study=args.per_study, gallery=gallery)
    print(metrics_markdown(evaluation))
    if evaluation.normal_variants is not None:
        print(mimics_markdown(evaluation.normal_variants))
    if args.per_study:
        print(per_study_markdown(evaluation.per_study))
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return 0


async def _evaluate(args: argparse.Namespace) -> tuple[Evaluation, Gallery | None]:
    """Open the model and the studies, and count, with a progress bar over studies."""
    from tqdm import tqdm

    from api.config import DEFAULT_FLOOR_MM
    from api.inference.contract import parse_windows
    from export.evaluation.data import open_studies, parse_data_source
    from export.evaluation.gallery import Gallery
    from export.evaluation.metrics import SliceMetricsAccumulator
    from export.evaluation.models import check_threshold, open_model, parse_model_source
    from export.evaluation.run import describe_model, evaluate_async
    from export.sources.seg_studies import METASTASIS_SEGMENTS

    floor_mm = DEFAULT_FLOOR_MM if args.reporting_floor_mm is None else args.reporting_floor_mm
    source = parse_model_source(args.model)
    data = parse_data_source(args.data)
    windows = parse_windows(args.windows) if args.windows else None
    total, studies = open_studies(data, args.segments or METASTASIS_SEGMENTS)
    counter = SliceMetricsAccumulator(args.match, connectivity=args.connectivity)
    gallery = Gallery(args.gallery) if args.gallery else None
    model = open_model(source, threshold=args.threshold, windows=windows, timeout_s=args.timeout)
    log.info("evaluating %s (%s) on %s: %d studies", source, source.kind.value, data, total)
    try:
        info = await check_threshold(model, args.threshold)
        with tqdm(total=total, unit="study", desc="evaluate") as bar:
            evaluation = await evaluate_async(
                model, studies, batch=args.batch, accumulator=counter, gallery=gallery,
                on_study=lambda study: bar.update(1), floor_mm=floor_mm,
            )
    finally:
        await model.close()
    evaluation.model = describe_model(info, str(source))
    evaluation.data = str(data)
    return evaluation, gallery

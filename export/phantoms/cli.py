"""``bonemets phantom``: write synthetic CT studies with known metastasis truth."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EPILOG = """examples:
  bonemets phantom --out data/phantoms --studies 4 --seed 1
  bonemets phantom --out /tmp/ph --studies 20 --seed 7 --slices 100 --size 512 --encoding mixed
  bonemets phantom --out /tmp/neg --studies 5 --seed 3 --negative-share 1.0 --region lumbar
  bonemets phantom --out /tmp/big --studies 200 --seed 9 --workers 2
  bonemets phantom --out /tmp/old --studies 8 --seed 5 --marrow-hu 70:270   # osteoporotic too
  bonemets phantom --out /tmp/mimics --studies 20 --seed 2612 --bone-variants   # bone islands,
                            # haemangiomas, Schmorl's nodes, fatty marrow: normal, not labelled
  bonemets phantom --out /tmp/varied --studies 20 --seed 4 --randomise   # a different look
                            # per study: kernel, phase, metal, partial volume, matrix, marrow
  bonemets phantom --out /tmp/metal --studies 4 --seed 8 --metal spinal_fixation --kernel sharp
  bonemets phantom --out /tmp/thick --studies 4 --seed 6 --partial-volume --contrast delayed

Each study is written as DIR/study_NNNN/{dicom/NNNN.dcm, seg.dcm, truth.json}; DIR/index.json
lists them. The same --seed gives the same studies, byte for byte. Slice files are named by
instance number; head-first studies number them from the top down (truth.json maps both).
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``phantom`` subcommand."""
    parser = subparsers.add_parser(
        "phantom",
        help="write synthetic CT studies with known metastasis truth",
        description="Write synthetic CT series (one DICOM file per slice) of a trunk with a "
        "spine, ribs and organs, with lytic/blastic/mixed bone metastases in a share of them, "
        "plus a DICOM SEG and truth.json per study.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--studies", type=int, default=4, help="number of studies (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole set (default 0)")
    parser.add_argument("--slices", type=int, default=64, help="slices per study (default 64)")
    parser.add_argument("--size", type=int, default=None,
                        help="rows = columns; default: a scanner mix, mostly 512, some 256/768")
    parser.add_argument("--negative-share", type=float, default=0.4,
                        help="share of studies without metastasis (default 0.4)")
    parser.add_argument("--encoding", choices=("none", "jpeg2000", "rle", "mixed"),
                        default="none", help="pixel data encoding, lossless (default none)")
    parser.add_argument("--region", choices=("thoracic", "lumbar", "thoracolumbar", "any"),
                        default="any", help="part of the spine covered (default: drawn)")
    parser.add_argument("--lesions", type=int, default=None,
                        help="lesions per positive study (default: drawn, 1-6)")
    parser.add_argument("--marrow-hu", type=marrow_range, default=None, metavar="LOW:HIGH",
                        help="range of the patients' vertebral marrow density in HU (default "
                        "140:270, normal adult bone; 70:270 adds osteoporotic patients)")
    parser.add_argument("--bone-variants", action="store_true",
                        help="draw normal variants that mimic metastases into the vertebral "
                        "bodies (never labelled; listed in truth.json); the same seed without "
                        "this flag is the same patient without them")
    parser.add_argument("--kernel", choices=("soft", "standard", "sharp"), default=None,
                        help="reconstruction kernel: noise texture and edges (default standard)")
    parser.add_argument("--contrast", choices=("none", "arterial", "venous", "delayed"),
                        default=None, help="contrast phase (default: drawn, no delayed)")
    parser.add_argument("--metal", choices=("none", "spinal_fixation"), default=None,
                        help="pedicle screws and rods with their streaks (default none)")
    parser.add_argument("--partial-volume", action="store_true",
                        help="slices over 1.25 mm as the average of three thin ones, labelled "
                        "where the lesion fills most of the slice")
    parser.add_argument("--randomise", action="store_true",
                        help="draw the look of each study from its own stream: kernel, "
                        "contrast phase, metal, partial volume, matrix, intercept, patient "
                        "size, dose, marrow range, normal variants (options given win)")
    parser.add_argument("--start-index", type=int, default=1,
                        help="number of the first study folder (default 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="studies made in parallel processes (default 1)")
    parser.set_defaults(func=run)


def marrow_range(text: str) -> tuple[float, float]:
    """``LOW:HIGH`` in HU, checked by PhantomSpec itself."""
    from export.phantoms.spec import PhantomSpec

    try:
        low, high = (float(x) for x in text.split(":"))
        return PhantomSpec(seed=0, marrow_hu=(low, high)).marrow_hu
    except ValueError as exc:
        detail = str(exc) if "marrow_hu" in str(exc) else "expected LOW:HIGH in HU"
        raise argparse.ArgumentTypeError(f"{detail} (got {text!r})") from None


def study_seed(seed: int, index: int) -> int:
    """Seed of study ``index`` in a set made with ``seed`` (stable, independent per study)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def negative_indices(seed: int, studies: int, share: float, start: int) -> set[int]:
    """Which study numbers are negative: exactly round(share * studies) of them, by seed."""
    import numpy as np

    count = round(min(1.0, max(0.0, share)) * studies)
    order = np.random.default_rng([seed, 0x4E]).permutation(studies)
    return {start + int(i) for i in order[:count]}


def study_overrides(args: argparse.Namespace, number: int, negative: bool) -> dict[str, Any]:
    """The PhantomSpec fields the command line fixes for study ``number``."""
    from export.phantoms.spec import positive_lesion_count

    overrides: dict[str, Any] = {"slices": args.slices, "encoding": args.encoding}
    if args.size is not None:
        overrides["size"] = args.size
    if args.region != "any":
        overrides["region"] = args.region
    if args.marrow_hu is not None:
        overrides["marrow_hu"] = args.marrow_hu
    if args.bone_variants:
        overrides["bone_variants"] = True
    for name in ("kernel", "contrast", "metal"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    for name in ("partial_volume", "randomise"):
        if getattr(args, name, False):
            overrides[name] = True
    if negative:
        overrides["n_lesions"] = 0
    elif args.lesions is not None:
        overrides["n_lesions"] = max(1, args.lesions)
    else:
        overrides["n_lesions"] = positive_lesion_count(study_seed(args.seed, number))
    return overrides


def make_study(out: Path, number: int, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """Make and write one study; return its index entry."""
    from export.phantoms.dicom_writer import write_study
    from export.phantoms.phantom import make_phantom
    from export.phantoms.spec import sample_spec

    spec = sample_spec(seed, **overrides)
    phantom = make_phantom(spec)
    study_dir = write_study(phantom, out / f"study_{number:04d}")
    return {"study": study_dir.name, "seed": spec.seed, "lesions": len(phantom.lesions),
            "region": spec.region, "size": spec.size, "slices": spec.slices,
            "encoding": spec.encoding}


def run(args: argparse.Namespace) -> int:
    """Write the studies and DIR/index.json; print a one-line summary."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    if args.studies < 1 or args.workers < 1:
        raise SystemExit("--studies and --workers must be >= 1")
    if not getattr(args, "verbose", False):
        # highdicom and openjpeg log every frame at INFO; keep the progress bar readable.
        # Raise their level only: pydicom's stays at ERROR (api.dicom: its warnings quote values).
        for name in ("highdicom", "openjpeg", "pydicom"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    numbers = range(args.start_index, args.start_index + args.studies)
    negatives = negative_indices(args.seed, args.studies, args.negative_share, args.start_index)
    jobs = [(args.out, n, study_seed(args.seed, n), study_overrides(args, n, n in negatives))
            for n in numbers]
    args.out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(jobs), desc="phantoms", unit="study")
    if args.workers == 1:
        index = []
        for job in jobs:
            index.append(make_study(*job))
            bar.update()
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            futures = [pool.submit(make_study, *job) for job in jobs]
            for future in futures:
                future.add_done_callback(lambda _: bar.update())
            index = [future.result() for future in futures]
    bar.close()
    (args.out / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    positives = sum(1 for item in index if item["lesions"])
    print(f"wrote {len(index)} studies to {args.out} ({positives} with metastases)")
    return 0

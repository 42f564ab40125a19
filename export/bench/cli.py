"""``bonemets bench``: throughput, gateway CPU, bytes and memory, measured in one run.

Not a test: it prints a table, writes JSON and, if asked, rewrites docs/benchmarks.md.
Heavy imports (tritonclient, pydicom, torch for a stand-in model) happen inside :func:`run`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "bonemets-bench"
# (full, --quick) defaults of the options left unset.
DEFAULTS: dict[str, tuple[Any, Any]] = {
    "slices": (200, 48),
    "big_study_slices": (1000, 200),
    "concurrency": ("1,2,4,8", "1,4"),
    "repeats": (3, 1),
    "warmup": (5.0, 1.0),
    "window": (15.0, 4.0),
}

EPILOG = """examples:
  bonemets bench --quick                       # a few minutes: small studies, short windows
  bonemets bench --update-docs docs/benchmarks.md
  bonemets bench --baseline 4b85dc9 --profile   # side by side with 4b85dc9, and where the time goes
  bonemets bench --slices 200 --concurrency 1,2,4,8 --batch 8 --big-study-slices 1000 \\
      --model-repository model_repository --out bench.json

(a) Triton alone at each concurrency (slices/s, p50/p99 latency); (b) the gateway end to end
(upload to result), and (b4) four 50-slice studies posted at once; (c) the gateway's CPU
per slice with a zero-cost model; (d) bytes per slice to and from Triton; (e) the gateway's
peak memory on a large study. Studies are written once under --cache-dir and reused;
what the gateways store (a few GB) stays there until the run ends.
Without a model in --model-repository, a random-weight model of the demo architecture is
built there (needs torch).

--baseline REV checks REV out as a git worktree under --cache-dir (its own virtualenv there
when its dependencies are not met by this one) and runs its gateway beside this checkout's,
the two taking turns against the same Triton; every gateway figure is reported for both,
with current/baseline. --profile adds py-spy's CPU share per stage of each gateway's uvicorn
process and its decode workers (raw samples under --cache-dir/profiles).
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bonemets bench``."""
    parser = subparsers.add_parser(
        "bench", help="measure throughput, gateway CPU, bytes and memory",
        description="Benchmark Triton alone and the gateway in front of it, on synthetic "
                    "studies, and report against the targets.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--slices", type=int, help="slices of the study for (a)-(d) "
                        "(default 200; --quick 48)")
    parser.add_argument("--concurrency", help="comma-separated concurrency levels for (a) "
                        "(default 1,2,4,8; --quick 1,4)")
    parser.add_argument("--batch", type=int, default=8, help="slices per request (default 8)")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                        help="repository holding the demo model (default model_repository)")
    parser.add_argument("--big-study-slices", type=int,
                        help="slices of the study for (e) (default 1000; --quick 200)")
    parser.add_argument("--repeats", type=int, help="gateway runs per figure after a warm-up "
                        "(default 3; --quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per concurrency "
                        "(default 5; --quick 1)")
    parser.add_argument("--window", type=float, help="measurement window in seconds "
                        "(default 15; --quick 4)")
    parser.add_argument("--out", type=Path, default=Path("bench.json"),
                        help="JSON results (default bench.json)")
    parser.add_argument("--update-docs", type=Path, nargs="?", const=Path("docs/benchmarks.md"),
                        help="rewrite this page with the results (default docs/benchmarks.md)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"studies and model repositories kept between runs "
                             f"(default {DEFAULT_CACHE})")
    parser.add_argument("--quick", action="store_true", help="small studies, short windows")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure the project at git revision REV (a worktree in "
                             "--cache-dir), interleaved with this checkout, and report ratios "
                             "(the issue 24 baseline: 4b85dc9)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the uvicorn process and the decode workers over 3 more "
                             "null-model runs per checkout: CPU share per stage")
    parser.set_defaults(func=run)


def resolve(args: argparse.Namespace) -> Any:
    """The :class:`Plan` from the options, with --quick or full defaults for unset ones."""
    from api.inference.contract import MAX_BATCH_SIZE
    from export.bench.phases import Plan

    pick = 1 if args.quick else 0
    value = {name: getattr(args, name) if getattr(args, name) is not None else default[pick]
             for name, default in DEFAULTS.items()}
    concurrency = tuple(int(level) for level in str(value["concurrency"]).split(","))
    batch_fits = 1 <= args.batch <= MAX_BATCH_SIZE and args.batch <= value["slices"]
    if min(concurrency) < 1 or not batch_fits:
        raise ValueError(f"concurrency must be >= 1, batch 1..{MAX_BATCH_SIZE}, slices >= batch")
    return Plan(slices=value["slices"], big_study_slices=value["big_study_slices"],
                concurrency=concurrency, batch=args.batch, repeats=value["repeats"],
                warmup_s=value["warmup"], window_s=value["window"],
                profile=bool(getattr(args, "profile", False)))


def run(args: argparse.Namespace) -> int:
    """Run every phase, print the table, write the JSON (and the docs page)."""
    try:
        plan = resolve(args)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    from export.bench.session import run_benchmark

    if not getattr(args, "verbose", False):
        # Triton's start-up tables and one line per HTTP request would bury the progress bar.
        for noisy in ("bonemets.triton", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    results = run_benchmark(plan, args.model_repository, args.cache_dir,
                            command=shlex.join(["bonemets", *sys.argv[1:]]),
                            date=datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
                            baseline=getattr(args, "baseline", None))
    from export.bench.report import figure_rows, format_rows, format_table, target_rows
    from export.bench.sides import profile_rows

    for role, description in results.models.items():
        print(f"model ({role}): {description}")
    for name, description in results.studies.items():
        print(f"{name}: {description}")
    for label, checkout in results.checkouts.items():
        print(f"{label} checkout: {checkout['commit'][:12]} at {checkout['root']}, "
              f"{checkout['install']}; api from {checkout['api_module']}")
    print(format_table(figure_rows(results), ("Measured", "Value")))
    if results.baseline is not None:
        print()
        print(format_rows(("Figure", "Baseline", "Current", "Current/baseline", "Run by run"),
                          results.comparison()))
    if results.profile:
        print()
        print(format_rows(*profile_rows(results.profiles(), results.profile_cpu_ms())))
    print()
    print(format_table(target_rows(results), ("Target", "Measured -> verdict")))
    args.out.write_text(json.dumps(results.to_json(), indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)
    if args.update_docs is not None:
        from export.bench.markdown import write_benchmarks_page

        write_benchmarks_page(args.update_docs, results)
        log.info("wrote %s", args.update_docs)
    return 0

"""``bonemets load``: locust users against a running gateway, headless, with a report.

Locust runs as a subprocess of its own: importing it monkey-patches the standard library
with gevent, which must never happen inside the gateway, a benchmark or pytest.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
LOCUSTFILE = PROJECT_ROOT / "deploy" / "load" / "locustfile.py"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "bonemets-load"
LOAD_CLIENT = "load-test"
SUMMARY = "summary.json"  # the locustfile's final counts, written once every user stopped
LOAD_SCOPES = ("studies:write", "studies:read", "studies:delete")

EPILOG = """examples:
  bonemets load --users 10 --duration 2m --url http://127.0.0.1:8000
  bonemets load --users 20 --duration 5m --url https://bonemets.example.org --key "$KEY" \\
      --out load-report
  bonemets load --users 4 --duration 30s --url http://127.0.0.1:8000 --think 1:3 --slices 16

Each user uploads a phantom study (slice files or a zip), polls it to its end, fetches a
few masks and overlays through the result's signed links (sometimes the SEG, SR and FHIR
Bundle too), deletes it, and pauses (--think). The studies are made once, before the run,
under --cache-dir. Without --key, a key for the client 'load-test' is made in the key store
of --data-dir (the gateway's own, so run it where the gateway runs). Locust writes its CSV
files (load_stats.csv, load_failures.csv, ...), report.html and summary.json (the final
counts, once every user has finished) into --out; the exit status
is locust's: 1 when any request failed.
"""


@dataclass(frozen=True)
class LoadPlan:
    """One locust run: who, how long, against what, with which studies, reported where."""

    url: str
    key: str
    users: int
    duration_s: int
    studies: Path
    out: Path
    think: str = "5:15"
    spawn_rate: float = 2.0
    stop_timeout_s: int = 600
    extras_share: float = 0.2
    timings: Path | None = None


def parse_duration(text: str) -> int:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h30m``; ValueError otherwise."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or parts is None:
        raise ValueError(f"a duration is like 30s, 5m or 1h30m, not {text!r}")
    hours, minutes, seconds = (int(group or 0) for group in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def _think(text: str) -> str:
    low, _, high = text.partition(":")
    if float(low) < 0 or float(high or low) < float(low):
        raise ValueError(f"--think is MIN:MAX seconds, MIN <= MAX, not {text!r}")
    return text


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bonemets load``."""
    parser = subparsers.add_parser(
        "load", help="load-test a running gateway with locust (headless)",
        description="Run locust users against a gateway: upload phantom studies, poll, "
                    "read masks and overlays, delete; write locust's CSV and HTML report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, required=True, help="concurrent users")
    parser.add_argument("--duration", type=parse_duration, required=True,
                        help="how long: 30s, 5m, 1h (users then finish their study)")
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", default=os.environ.get("BONEMETS_LOAD_KEY"),
                        help="API key (default BONEMETS_LOAD_KEY; unset: one is made for"
                             " the client 'load-test' in --data-dir's key store)")
    parser.add_argument("--data-dir", type=Path,
                        help="the gateway's data directory, for the key (default"
                             " BONEMETS_DATA_DIR, data)")
    parser.add_argument("--out", type=Path, default=Path("load-report"),
                        help="locust's CSV files and report.html (default load-report)")
    parser.add_argument("--think", type=_think, default="5:15",
                        help="seconds a user pauses between studies, MIN:MAX (default 5:15)")
    parser.add_argument("--spawn-rate", type=float, default=2.0,
                        help="users started per second (default 2)")
    parser.add_argument("--studies", type=int, default=4, help="distinct studies (default 4)")
    parser.add_argument("--slices", type=int, default=32, help="slices per study (default 32)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the studies are made once (default {DEFAULT_CACHE})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Make the studies (once) and the key (if none), run locust, say where the report is."""
    from export.bench.load_studies import prepared_studies

    if args.users < 1 or args.duration < 1:
        log.error("--users and --duration must be at least 1")
        return 2
    studies = prepared_studies(args.cache_dir, count=args.studies, slices=args.slices,
                               size=args.size)
    key = args.key or make_load_key(args.data_dir)
    plan = LoadPlan(url=args.url, key=key, users=args.users, duration_s=args.duration,
                    studies=studies, out=args.out, think=args.think, spawn_rate=args.spawn_rate)
    status = run_locust(plan)
    print(f"report: {plan.out / 'report.html'}; statistics: {plan.out / 'load_stats.csv'}")
    return status


def make_load_key(data_dir: Path | None) -> str:
    """A new key for the client ``load-test`` in the gateway's key store."""
    from api.auth.keys import open_key_store
    from api.config import Settings

    settings = Settings()
    store = open_key_store(data_dir or settings.data_dir, settings.database_url,
                           settings.key_pepper_hex)
    try:
        record, key = store.create(LOAD_CLIENT, LOAD_SCOPES)
    finally:
        store.close()
    log.info("made key %s for client %r in %s", record.id, LOAD_CLIENT, store.where)
    return key


def locust_command(plan: LoadPlan) -> list[str]:
    """The headless locust command line for ``plan``."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--host", plan.url, "--users", str(plan.users),
            "--spawn-rate", str(plan.spawn_rate), "--run-time", f"{plan.duration_s}s",
            "--stop-timeout", str(plan.stop_timeout_s),
            "--csv", str(plan.out / "load"), "--html", str(plan.out / "report.html"),
            "--only-summary", "--loglevel", "WARNING"]


def run_locust(plan: LoadPlan) -> int:
    """Run locust to its end, with a progress line on stderr; its exit status."""
    import importlib.util

    # Found, not imported: importing locust would monkey-patch this process with gevent.
    if importlib.util.find_spec("locust") is None:
        raise OSError("locust is not installed: pip install 'locust>=2.30' (in the test extra)")
    plan.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BONEMETS_LOAD_KEY": plan.key, "BONEMETS_LOAD_STUDIES": str(plan.studies),
           "BONEMETS_LOAD_THINK": plan.think, "BONEMETS_LOAD_EXTRAS": str(plan.extras_share),
           "BONEMETS_LOAD_SUMMARY": str(plan.out / SUMMARY)}
    if plan.timings is not None:
        env["BONEMETS_LOAD_TIMINGS"] = str(plan.timings)
    began = time.monotonic()
    with open(plan.out / "locust.log", "wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own fixed command line
            locust_command(plan), env=env, stdout=output, stderr=subprocess.STDOUT)
        while process.poll() is None:
            time.sleep(2.0)
            _progress(plan, time.monotonic() - began)
    sys.stderr.write("\n")
    if process.returncode not in (0, 1):  # 1: requests failed, reported in the CSV
        tail = (plan.out / "locust.log").read_text(encoding="utf-8", errors="replace")
        log.error("locust exited with %d:\n%s", process.returncode, tail[-3000:])
    return process.returncode


def read_stats(path: Path) -> dict[str, dict[str, str]]:
    """locust's ``*_stats.csv`` by request name ("Aggregated" for the total)."""
    try:
        with open(path, newline="", encoding="utf-8") as stats:
            return {row["Name"]: row for row in csv.DictReader(stats)}
    except (OSError, KeyError):
        return {}  # not written yet, or half written


def _progress(plan: LoadPlan, elapsed_s: float) -> None:
    stats = read_stats(plan.out / "load_stats.csv")
    total = stats.get("Aggregated", {})
    studies = stats.get("upload-to-result", {})
    phase = "running" if elapsed_s < plan.duration_s else "finishing studies"
    sys.stderr.write(f"\r{elapsed_s:5.0f}/{plan.duration_s} s {phase}: {plan.users} users, "
                     f"{total.get('Request Count', 0)} requests, "
                     f"{total.get('Failure Count', 0)} failed, "
                     f"{studies.get('Request Count', 0)} studies done   ")
    sys.stderr.flush()

"""``bonemets soak``: the local default service under many uploaders for minutes.

Starts ``bonemets serve`` (gateway, its local Triton, SQLite, local disk) on free ports with
a fresh data directory, measures a baseline (the same studies one at a time, alone), then
runs ``bonemets load``'s locust users against it while the gateway's RSS is sampled from
``/proc/<pid>/status``. Afterwards every study still there is deleted and the data directory
is searched for files the studies left. Not a test: it prints a table and writes JSON (and,
if asked, its section of docs/benchmarks.md); the exit status is 1 when a condition fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from export.bench.load import DEFAULT_CACHE, SUMMARY, LoadPlan, parse_duration, run_locust

log = logging.getLogger(__name__)

DEFAULT_RSS_BOUND = 5.0  # MB/min: 20 MB over the last 4 minutes is not "flat"
MB = 1e6
DATABASE_SIDECARS = ("-wal", "-shm", "-journal")

EPILOG = """examples:
  bonemets soak                                   # 20 users, 5 minutes, the shipped model
  bonemets soak --update-docs docs/benchmarks.md --note "another job shared the CPU"
  bonemets soak --users 4 --duration 30s --null-model --slices 8 --size 256   # a smoke run

The exit status is 1 when a request failed, the gateway's RSS grew faster than
--rss-bound over the load's last 4 minutes, or a study left a file behind.
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bonemets soak``."""
    parser = subparsers.add_parser(
        "soak", help="many uploaders against the local service: errors, latency, memory",
        description="Run the local default service under locust users for minutes: errors, "
                    "p50/p95 upload to result against a baseline, the gateway's memory "
                    "slope, files left after deletion.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=20, help="concurrent uploaders (20)")
    parser.add_argument("--duration", type=parse_duration, default=300,
                        help="how long the load lasts: 30s, 5m (default 5m)")
    parser.add_argument("--think", default="1:5",
                        help="seconds a user pauses between studies, MIN:MAX (default 1:5)")
    parser.add_argument("--studies", type=int, default=4, help="distinct studies (default 4)")
    parser.add_argument("--slices", type=int, default=32, help="slices per study (default 32)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                        help="repository holding the demo model (default model_repository)")
    parser.add_argument("--null-model", action="store_true",
                        help="serve the zero-cost bonemets_null model instead (a smoke run)")
    parser.add_argument("--rss-bound", type=float, default=DEFAULT_RSS_BOUND,
                        help=f"largest gateway RSS slope in MB/min (default {DEFAULT_RSS_BOUND:g})")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="seconds between memory samples (default 5)")
    parser.add_argument("--client-max-inflight", type=int, default=1000,
                        help="the users share one key, where they stand for separate clients:"
                             " its limit of studies in flight (default 1000: none; the"
                             " gateway's own default is 4, above which users wait out 429s)")
    parser.add_argument("--baseline-runs", type=int, default=3,
                        help="studies sent alone before the load (default 3)")
    parser.add_argument("--out", type=Path, default=Path("soak.json"), help="JSON results")
    parser.add_argument("--report-dir", type=Path, default=Path("soak-report"),
                        help="locust's CSV files and report.html (default soak-report)")
    parser.add_argument("--update-docs", type=Path, nargs="?", const=Path("docs/benchmarks.md"),
                        help="write the soak's section of this page (default docs/benchmarks.md)")
    parser.add_argument("--note", default="", help="a sentence for the page: what else ran")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"studies and models kept between runs (default {DEFAULT_CACHE})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the soak, print the table, write the JSON (and the page); 1 if a condition fails."""
    from export.bench.soak_report import figure_rows, format_table, verdicts

    if not getattr(args, "verbose", False):
        for noisy in ("bonemets.triton", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    results = soak(args, command=shlex.join(["bonemets", *sys.argv[1:]]))
    print(format_table(figure_rows(results), ("Measured", "Value")))
    print()
    checks = verdicts(results)
    print(format_table([(what, measured, "pass" if ok else "FAIL")
                        for what, measured, ok in checks], ("Condition", "Measured", "Verdict")))
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s", args.out)
    if args.update_docs is not None:
        from export.bench.soak_report import soak_markdown, write_soak_section

        write_soak_section(args.update_docs, soak_markdown(results, args.note))
        log.info("wrote %s", args.update_docs)
    return 0 if all(ok for _, _, ok in checks) else 1


def soak(args: argparse.Namespace, *, command: str) -> dict[str, Any]:
    """The whole soak; returns the results as JSON-ready data."""
    from export.bench.gateway import Gateway
    from export.bench.load_studies import prepared_studies
    from export.bench.report import Machine
    from export.bench.repositories import demo_model, null_model

    machine = Machine.here()  # before anything starts: the machine's own load
    studies = prepared_studies(args.cache_dir, count=args.studies, slices=args.slices,
                               size=args.size)
    served = (null_model(args.cache_dir) if args.null_model
              else demo_model(args.model_repository, args.cache_dir))
    timings = args.report_dir / "upload_to_result.jsonl"
    args.report_dir.mkdir(parents=True, exist_ok=True)
    timings.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bonemets-soak-") as scratch:
        data_dir = Path(scratch) / "data"
        limits = {"BONEMETS_CLIENT_MAX_INFLIGHT": str(args.client_max_inflight)}
        with Gateway(None, served.name, data_dir, batch=8, repository=served.repository,
                     extra_env=limits) as gw:
            before = _files(data_dir)
            baseline = [_one_study(gw.base_url, gw.headers, path)
                        for path in _cycle(studies, args.baseline_runs)]
            key = gw.headers["Authorization"].removeprefix("Bearer ")
            plan = LoadPlan(url=gw.base_url, key=key, users=args.users,
                            duration_s=args.duration, studies=studies, out=args.report_dir,
                            think=args.think, timings=timings)
            with RssSampler(gw.pid, args.interval) as sampler:
                status = run_locust(plan)
            left_over = _delete_all(gw.base_url, gw.headers)
            left = sorted(str(path.relative_to(data_dir)) for path in _files(data_dir) - before
                          if not path.name.endswith(DATABASE_SIDECARS))
    return {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="minutes"),
        "machine": {**asdict(machine), "load_average_end": os.getloadavg()},
        "settings": {"users": args.users, "duration_s": args.duration, "think": args.think,
                     "studies": args.studies, "slices": args.slices, "size": args.size,
                     "client_max_inflight": args.client_max_inflight,
                     "model": served.description},
        "baseline": _baseline(baseline),
        "load": _load_figures(plan, status, timings),
        "memory": sampler.figures(args.duration, args.rss_bound),
        "cleanup": {"left_over_deleted": left_over, "files_left": len(left),
                    "files_left_sample": left[:20]},
    }


def _cycle(studies: Path, count: int) -> list[Path]:
    folders = sorted(path for path in studies.iterdir() if path.is_dir())
    return [folders[index % len(folders)] for index in range(count)]


def _one_study(base_url: str, headers: dict[str, str], study: Path) -> float:
    """Upload to result of one study sent alone, polled as the locust users poll; deleted."""
    import httpx

    files = [("files", (path.name, path.read_bytes(), "application/dicom"))
             for path in sorted(study.glob("*.dcm"))]
    with httpx.Client(base_url=base_url, headers=headers, timeout=600.0) as client:
        began = time.perf_counter()
        job = client.post("/v1/studies", files=files).raise_for_status().json()
        while job["state"] not in ("succeeded", "failed"):
            time.sleep(1.0)
            job = client.get(f"/v1/studies/{job['id']}").raise_for_status().json()
        elapsed = time.perf_counter() - began
        client.delete(f"/v1/studies/{job['id']}").raise_for_status()
    if job["state"] != "succeeded":
        raise RuntimeError(f"baseline study failed: {job.get('error')}")
    return elapsed


def _delete_all(base_url: str, headers: dict[str, str]) -> int:
    """Delete every study still listed (users stopped mid-study); how many there were."""
    import httpx

    deleted = 0
    with httpx.Client(base_url=base_url, headers=headers, timeout=120.0) as client:
        while True:
            page = client.get("/v1/studies", params={"limit": 200}).raise_for_status().json()
            ids = [job["id"] for job in page["items"]]
            if not ids:
                return deleted
            for job_id in ids:
                client.delete(f"/v1/studies/{job_id}").raise_for_status()
                deleted += 1


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def _baseline(runs: list[float]) -> dict[str, Any]:
    from export.bench.soak_report import percentile

    return {"runs_s": [round(run, 3) for run in runs], "median_s": percentile(runs, 0.5)}


def _load_figures(plan: LoadPlan, status: int, timings: Path) -> dict[str, Any]:
    from export.bench.soak_report import percentile

    summary_path = plan.out / SUMMARY
    summary: dict[str, Any] = (
        json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file()
        else {"total": {}, "routes": {}, "errors": ["locust wrote no summary"]})
    lines = timings.read_text(encoding="utf-8").splitlines() if timings.is_file() else []
    times = [json.loads(line)["upload_to_result_s"] for line in lines]
    studies = summary["routes"].get("upload-to-result", {})
    return {
        "locust_exit_status": status,
        "requests": summary["total"].get("requests", 0),
        # No summary (locust did not start) counts as a failure: never a clean run.
        "failures": summary["total"].get("failures", 0 if summary_path.is_file() else 1),
        "studies_succeeded": len(times),
        "studies_failed": studies.get("failures", 0),
        "p50_s": percentile(times, 0.5), "p95_s": percentile(times, 0.95),
        "max_s": max(times) if times else None,
        "by_route": summary["routes"],
        "failure_messages": summary["errors"][:20],
    }


class RssSampler:
    """The gateway's RSS (``VmRSS`` of /proc/<pid>/status) and its decode workers', sampled
    on a thread every ``interval_s`` while the ``with`` block runs."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[tuple[float, float, float]] = []  # (s since start, gateway, workers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._began = 0.0

    def _run(self) -> None:
        from export.bench.procfs import tree_memory

        while True:
            gateway = _vm_rss(self.pid)
            if gateway is not None:
                workers = tree_memory(self.pid, with_pss=False).rss_by_role.get(
                    "decode workers", 0)
                self.samples.append((time.monotonic() - self._began, gateway / MB, workers / MB))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> RssSampler:
        self._began = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self, load_s: float, bound: float) -> dict[str, Any]:
        """Start, peak, end and slope (over the load's last minutes) of the samples."""
        from export.bench.soak_report import slope_per_minute, slope_window

        gateway = [(t, rss) for t, rss, _ in self.samples]
        window = slope_window(gateway, load_s)
        first, last = self.samples[0], self.samples[-1]
        return {
            "interval_s": self.interval_s, "bound_mb_per_min": bound,
            "gateway_start_mb": first[1], "gateway_end_mb": last[1],
            "gateway_peak_mb": max(rss for _, rss in gateway),
            "workers_start_mb": first[2], "workers_end_mb": last[2],
            "slope_window_s": (window[-1][0] - window[0][0]) if window else 0.0,
            "slope_samples": len(window),
            "gateway_slope_mb_per_min": slope_per_minute(window),
            "samples": [[round(t, 1), round(rss, 1), round(workers, 1)]
                        for t, rss, workers in self.samples],
        }


def _vm_rss(pid: int) -> int | None:
    """``VmRSS`` of ``/proc/<pid>/status`` in bytes; None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None

"""docs/benchmarks.md, written whole from one run's :class:`BenchResults`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from export.bench.profile import STAGES
from export.bench.report import MB, BenchResults, figure_rows, target_rows
from export.bench.sides import profile_rows
from export.bench.soak_report import soak_section
from export.packaging.tensorrt_report import report_section


def _markdown_table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _caveat(results: BenchResults) -> str:
    machine = results.machine
    gpu = "without a GPU" if machine.gpu == "none" else f"(GPU: {machine.gpu}, unused)"
    quick = ("**A `--quick` run: small studies and short windows, a development check rather "
             "than the benchmark.** " if "--quick" in results.command else "")
    return quick + (
        f"**Read these figures for what they are:** synthetic studies "
        f"({'; '.join(f'{k}: {v}' for k, v in results.studies.items())}) on a "
        f"{machine.cores}-core CPU machine {gpu}, with the model on the CPU and every "
        f"process (Triton, the gateway, the load generator) sharing the same {machine.cores} "
        f"cores. Load average when the run began: "
        f"{', '.join(f'{v:.2f}' for v in machine.load_average)}. A GPU host, or a gateway "
        f"and a Triton on separate machines, will give different figures."
    )


def _method(results: BenchResults) -> str:
    settings = results.settings
    return f"""## How each figure is measured

- **(a) Triton direct.** `tritonclient` gRPC, binary int16 HU tensors of
  {settings['batch']} slices decoded from the study, at concurrency {settings['concurrency']}
  (requests kept outstanding), as perf_analyzer does: {settings['warmup_s']:g} s of warm-up,
  then the requests that complete within a {settings['window_s']:g} s window (stretched
  until at least 8 have) are counted; latency is send-to-answer per request.
- **(b) Gateway end to end.** `bonemets serve --triton-url` in a subprocess against the same
  Triton and model; the study's {settings['slices']} DICOM files are POSTed, one multipart
  part per file, to `/v1/studies?wait=600` and timed from the first byte sent to the result
  received; {settings['repeats']} runs after one warm-up run. (b)/(a) divides the median run
  by the best concurrency of (a).
- **(b4) Studies at once.** {settings.get('studies_at_once', 4)} studies of 50 slices each
  (different phantoms), POSTed together from one thread each to the same gateway and demo
  model; slices/s is all their slices over the time from the first byte sent to the last
  result. (b4)/(a) divides the median run by the best concurrency of (a).
- **(c) Gateway CPU.** The same study through a second gateway whose Triton serves
  `bonemets_null` (same tensor contract, answers zeros at once, separate repository): user +
  system CPU seconds of the uvicorn process and its descendants (decode workers), read from
  `/proc/<pid>/stat` before and after the upload, divided by the slices. Receiving the
  upload, decoding, gRPC, lesions and mask storage all count. These runs poll for the
  result instead of `?wait`, so that the CPU spent until the upload is accepted (stored and
  its headers checked) can be read apart. Every study stays stored until the benchmark
  ends: ext4 skips the inodes freed in the last seconds to minutes each time it makes a
  file, so deleting a study right after its run charged the next upload up to ~0.4 ms of
  kernel CPU a file (perf: `ext4_create` -> `recently_deleted`), which a service that
  deletes by retention, days later, never pays.
- **(d) Bytes.** The tensor bytes the client of (a) actually sent and received, per slice;
  cross-checked against Triton's `nv_inference_count` and the loopback interface's counters
  (machine-wide, so other traffic inflates them).
- **(e) Memory.** A {settings['big_study_slices']}-slice study (one multipart part per file)
  through the null-model gateway (the model's speed does not change what the gateway holds: at most
  `BONEMETS_INFLIGHT_BATCHES` batches are in flight); the summed RSS of the gateway's process
  tree, sampled every 50 ms, and its summed PSS (shared pages split between processes).
"""


def _side_by_side(results: BenchResults) -> str:
    """The baseline's figures beside the current ones, with the command that measured both."""
    if results.baseline is None:
        return ""
    rev = results.settings.get("baseline") or "?"
    checkouts = results.checkouts
    lines = [f"- {label}: `{info['commit'][:12]}` ({info['install']})"
             for label, info in checkouts.items()]
    return f"""## Side by side with {rev}

Command: `{results.command}` on the machine above, {results.date}. Both checkouts' gateways
ran against the same Triton, taking turns (baseline, current, then current, baseline, ...),
so the ratios hold where the absolute figures drift between machines and days. (a) is
measured once and shared. The last column is the ratio of each pair of runs taken in turn,
lowest to highest: a difference inside that range is noise of the machine, not a result.

{chr(10).join(lines)}

{_markdown_table(("Figure", "Baseline", "Current", "Current/baseline", "Run by run"),
                 results.comparison())}

"""


def _profile(results: BenchResults) -> str:
    """Where the time goes: the share of py-spy's samples per stage, per process."""
    profiles = results.profiles()
    if not profiles:
        return ""
    headers, rows = profile_rows(profiles, results.profile_cpu_ms())
    rules = [(name, ", ".join(f"`{fragment}`" for fragment in fragments))
             for name, fragments in STAGES]
    return f"""## Where the time goes

Command: `{results.command}`, {results.date}. `py-spy record -f raw --threads --gil
--full-filenames` of the uvicorn process and of each decode worker (summed) over three more
runs of the study (or --repeats, if more) through the null-model gateway (not counted in (c):
py-spy pauses what it samples).
`--gil` keeps the samples of threads holding the GIL, i.e. running Python (without it, on a
busy machine, threads woken but waiting for a core count as running); C code that releases
the GIL (file writes, SQLite, gRPC's core) is not seen. A sample goes to the stage of its
leaf-most frame whose file path holds one of the stage's fragments below (pydicom, numpy
and other libraries hold none: their time goes to the project code that called them); a
DICOM module called from decoding counts as decode; no match is "other" (the event loop,
the job's orchestration, logging, responses). Cells: share of the role's samples, and that
share of its CPU per slice measured in (c).

{_markdown_table(headers, rows)}

{_markdown_table(("Stage", "File path fragments"), rules)}

"""


def benchmarks_markdown(results: BenchResults) -> str:
    """The whole page: caveat, command, machine, figures, targets, method."""
    machine = results.machine
    figures = [(name, value) for name, value in figure_rows(results)]
    targets = [(name, *verdict.split(" -> ")) for name, verdict in target_rows(results)]
    big = results.big_study
    upload = f"{big.upload_bytes / MB:.0f} MB upload" if big is not None else "not run"
    return f"""# Benchmarks

_Written by `bonemets bench`; do not edit by hand: rerun the command. The soak section is
written by `bonemets soak --update-docs`, the TensorRT section at the end by
`bonemets export tensorrt --report` on a GPU host; bench keeps both._

{_caveat(results)}

Command: `{results.command}`

Date: {results.date}

| Machine | |
|---|---|
| CPU | {machine.cpu} |
| Cores | {machine.cores} |
| RAM | {machine.ram_gb:g} GB |
| GPU | {machine.gpu} |
| Python | {machine.python} |
| Model (a, b) | {results.models.get('demo', '-')} |
| Model (c, e) | {results.models.get('null', '-')} |

## Figures

{_markdown_table(("Measured", "Value"), figures)}

Large study (e): {upload}.

## Targets

{_markdown_table(("Target", "Measured", "Verdict"), targets)}

Sizes are decimal (1 MB = 10^6 bytes). Raw runs: the JSON written with `--out`.

{_side_by_side(results)}{_profile(results)}{_method(results)}"""


def write_benchmarks_page(path: Path, results: BenchResults) -> None:
    """Write the page whole from ``results``, keeping its soak and TensorRT sections.

    Those are ``bonemets soak``'s and ``bonemets export tensorrt --report``'s (the latter
    measured on a GPU host): this benchmark's run must not erase them.
    """
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    kept = [section for section in (soak_section(old), report_section(old)) if section]
    text = benchmarks_markdown(results).rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "".join("\n" + section for section in kept), encoding="utf-8")

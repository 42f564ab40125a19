"""Where the gateway's CPU goes: py-spy samples of its processes, summed by stage.

``py-spy record -f raw --threads --full-filenames`` writes one line per distinct stack,
``thread (tid);root frame;...;leaf frame COUNT``, each frame ``function (path:line)``.
Without ``--idle`` py-spy drops threads the kernel does not list as running, but on a busy
machine a thread woken and waiting for a core is listed as running: idle pool threads then
fill the profile. So it records with ``--gil``, the threads holding the GIL: Python that
runs. C code that releases the GIL (file writes, SQLite, gRPC's core) is not seen.
A stack belongs to the stage of its frame nearest the leaf that a rule of :data:`STAGES`
matches (libraries such as pydicom or numpy match none, so their time goes to the
project code that called them); a stack no rule matches is "other": the event loop, the
job's orchestration (``api/study/pipeline.py``, ``runner.py``), logging, responses.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

# stage, path fragments of its frames (both trees' layouts: api/... and older flat modules)
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP receive / multipart", (
        "python_multipart/", "/multipart/", "starlette/formparsers.py", "starlette/requests.py",
        "uvicorn/protocols/", "/h11/", "httptools", "/api/http/multipart.py", "/api/multipart.py",
        "/api/study/intake.py", "/api/intake.py", "/api/study/storage.py", "/api/storage.py")),
    ("inter-process transfer", (
        "multiprocessing/", "concurrent/futures/process.py", "/pickle.py", "/copyreg.py",
        "/api/study/decoder_pool.py", "/api/decoder_pool.py")),
    ("decode", ("/api/study/decoding.py", "/api/decoding.py")),
    ("header pass", ("/api/dicom/",)),
    ("Triton client / shared memory", (
        "tritonclient/", "/grpc/", "/api/inference/triton", "/api/inference/balancer.py")),
    ("job database", ("/sqlite3/", "/psycopg", "/api/db/", "/api/study/jobs.py",
                      "/api/study/job_rows.py", "/api/jobs.py")),
    ("post-processing", (
        "/api/lesions/", "/api/inference/processing.py", "/api/study/results.py",
        "/api/study/overlays.py", "/api/overlays.py", "/api/postprocess.py", "/api/reports/")),
)
# The DICOM modules serve both the header pass and decoding: below a decode frame, theirs.
WITHIN = {"header pass": "decode"}
OTHER = "other"
STAGE_NAMES = (*(name for name, _ in STAGES), OTHER)


def frame_path(frame: str) -> str:
    """The file of a raw frame ``function (path:line)``; the frame itself when it has none."""
    inside = frame.rpartition(" (")[2].rstrip(")")
    return inside.rpartition(":")[0] or inside


def _matches(frame: str) -> str | None:
    path = frame_path(frame)
    return next((name for name, fragments in STAGES
                 if any(fragment in path for fragment in fragments)), None)


def stage_of(frames: list[str]) -> str:
    """The stage of one stack (root first): that of the leaf-most frame a rule matches,
    unless a frame above it is of the stage :data:`WITHIN` names for it."""
    stages = [_matches(frame) for frame in frames]
    found = next((name for name in reversed(stages) if name is not None), OTHER)
    enclosing = WITHIN.get(found)
    return enclosing if enclosing is not None and enclosing in stages else found


def parse_raw(text: str) -> Counter[tuple[str, ...]]:
    """Sample counts by stack (thread frame dropped) from py-spy's raw output."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames and frames[0].startswith(("thread ", "process ")):
            frames = frames[1:]
        stacks[tuple(frames)] += int(count)
    return stacks


def stage_samples(stacks: Counter[tuple[str, ...]]) -> dict[str, int]:
    """Samples per stage, every stage listed (zeros included), in :data:`STAGE_NAMES` order."""
    counts = dict.fromkeys(STAGE_NAMES, 0)
    for frames, count in stacks.items():
        counts[stage_of(list(frames))] += count
    return counts


def shares(counts: dict[str, int]) -> dict[str, float]:
    """Each stage's fraction of the samples (zeros when there were none)."""
    total = sum(counts.values())
    return {name: (count / total if total else 0.0) for name, count in counts.items()}


def py_spy() -> str:
    """py-spy beside this interpreter (the bench extra installs it), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


class Recorder:
    """py-spy recording processes for the ``with`` block; :attr:`counts` per role after it
    (the samples of every process of a role summed)."""

    def __init__(self, pids: dict[str, list[int]], folder: Path, rate: int = 500) -> None:
        self.pids = pids  # process role -> its pids
        self.folder = folder
        self.rate = rate
        self.counts: dict[str, dict[str, int]] = {}
        self._spies: dict[tuple[str, int], subprocess.Popen[bytes]] = {}

    def _out(self, role: str, pid: int) -> Path:
        return self.folder / f"{role.replace(' ', '-')}-{pid}.txt"

    def __enter__(self) -> Recorder:
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.txt"):  # an earlier run's processes: not this one's
            stale.unlink()
        for role, pids in self.pids.items():
            for pid in pids:
                command = [py_spy(), "record", "-p", str(pid), "-f", "raw", "--threads",
                           "--gil", "--full-filenames", "-r", str(self.rate),
                           "-o", str(self._out(role, pid))]
                self._spies[(role, pid)] = subprocess.Popen(  # noqa: S603 - py-spy, our args
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2.0)  # attaching takes a moment: the run must not start unobserved
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for spy in self._spies.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        for (role, pid), spy in self._spies.items():
            try:
                _, errors = spy.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, errors = spy.communicate()
            out = self._out(role, pid)
            if not out.is_file():
                log.warning("py-spy wrote nothing for %s %d: %s", role, pid,
                            errors.decode(errors="replace")[-400:])
                continue
            counts = stage_samples(parse_raw(out.read_text(encoding="utf-8")))
            summed = self.counts.setdefault(role, dict.fromkeys(STAGE_NAMES, 0))
            for name, count in counts.items():
                summed[name] += count

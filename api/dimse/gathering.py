"""Instances received by C-STORE, kept on disk by study until the study falls quiet.

A PACS sends a study as many C-STOREs, over one association or several, with no sign of
its end: a study is taken to be complete when no instance of it has arrived for the quiet
period, and is then handed over as one folder. Folders left by a stopped process are
picked up again at start (their quiet period starts anew).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Hands over a quiet study's folder, its owner and whether it is urgent; the folder is the
# receiver's then.
StudySubmitter = Callable[[Path, str, bool], None]
Clock = Callable[[], float]
SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]")
OWNER_FILE = ".owner"
# Present when an instance of the study came with C-STORE priority HIGH: the study is stat.
URGENT_FILE = ".urgent"


@dataclass
class _Pending:
    folder: Path
    owner: str
    last_arrival: float
    writing: int = 0


class StudyGatherer:
    """Folders of instances per (owner, study), and a thread handing over quiet ones."""

    def __init__(self, spool: Path, quiet_s: float, submit: StudySubmitter,
                 clock: Clock = time.monotonic) -> None:
        self.spool = spool
        self.quiet_s = quiet_s
        self._submit = submit
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        for folder in sorted(p for p in self.spool.iterdir() if p.is_dir()):
            owner_file = folder / OWNER_FILE
            if owner_file.is_file():  # left by a process that stopped before the quiet end
                owner = owner_file.read_text(encoding="utf-8")
                self._pending[(owner, folder.name)] = _Pending(folder, owner, self._clock())
        self._thread = threading.Thread(target=self._watch, name="dimse-gatherer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop handing over; studies not yet quiet stay on disk for the next start."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def begin(self, owner: str, study_uid: str, urgent: bool = False) -> Path:
        """The folder an instance of ``study_uid`` is written to; call :meth:`end` after.
        One ``urgent`` instance makes the study urgent."""
        key = (owner, SAFE_NAME.sub("_", study_uid)[:64] or "unknown")
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                folder = self.spool / f"{key[1]}-{uuid.uuid4().hex[:8]}"
                folder.mkdir(parents=True)
                (folder / OWNER_FILE).write_text(owner, encoding="utf-8")
                pending = self._pending[key] = _Pending(folder, owner, self._clock())
            pending.writing += 1
            if urgent:
                (pending.folder / URGENT_FILE).touch()
            return pending.folder

    def end(self, owner: str, study_uid: str) -> None:
        """An instance of the study is written (or given up): its quiet period starts now."""
        key = (owner, SAFE_NAME.sub("_", study_uid)[:64] or "unknown")
        with self._lock:
            pending = self._pending[key]
            pending.writing -= 1
            pending.last_arrival = self._clock()

    def hand_over_quiet(self) -> int:
        """Hand over every study quiet for ``quiet_s``; how many were handed over."""
        now = self._clock()
        with self._lock:
            quiet = [key for key, p in self._pending.items()
                     if p.writing == 0 and now - p.last_arrival >= self.quiet_s]
            studies = [self._pending.pop(key) for key in quiet]
        for study in studies:
            (study.folder / OWNER_FILE).unlink(missing_ok=True)
            urgent = (study.folder / URGENT_FILE).exists()
            (study.folder / URGENT_FILE).unlink(missing_ok=True)
            if not any(study.folder.iterdir()):
                os.rmdir(study.folder)  # every instance of it was refused
                continue
            try:
                self._submit(study.folder, study.owner, urgent)
            except Exception:  # the thread must outlive one study's failure
                log.exception("a study received by C-STORE could not be queued")
        return len(studies)

    def _watch(self) -> None:
        interval = min(1.0, self.quiet_s / 4)
        while not self._stopping.wait(interval):
            self.hand_over_quiet()

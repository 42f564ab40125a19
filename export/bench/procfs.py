"""CPU time and memory of a process tree, read from Linux ``/proc`` (no psutil needed).

A gateway is a uvicorn process plus spawned decode workers (and multiprocessing's
resource tracker); its cost is the sum over that tree. CPU time includes the children
the root has already reaped (``cutime``/``cstime``), so a worker that exits mid-study
is not lost. Memory is summed RSS (what the brief's target is about; it counts pages
shared between the spawned workers once per process, so it overstates) and summed PSS
(shared pages split between their users: the honest total, when the kernel offers it).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcessStat:
    """The fields of ``/proc/<pid>/stat`` that the benchmark uses (times in seconds)."""

    pid: int
    ppid: int
    user_s: float
    system_s: float
    children_user_s: float
    children_system_s: float

    @property
    def cpu_s(self) -> float:
        """User + system time of the process and of the children it has waited for."""
        return self.user_s + self.system_s + self.children_user_s + self.children_system_s


def parse_stat(text: str, ticks: int = CLOCK_TICKS) -> ProcessStat:
    """Parse one ``/proc/<pid>/stat`` line (proc(5)); the command name may hold spaces or ')'."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(value) / ticks for value in fields[11:15])
    return ProcessStat(pid, ppid, utime, stime, cutime, cstime)


def read_stat(pid: int) -> ProcessStat | None:
    """The process's stat, or None when it has gone."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def _children(pid: int) -> list[int] | None:
    """Child pids from every thread's ``children`` file; None when the kernel lacks them."""
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
        text = " ".join((task / "children").read_text() for task in tasks)
    except FileNotFoundError:
        return None if (PROC / str(pid)).exists() else []
    except (ProcessLookupError, PermissionError):
        return []
    return [int(child) for child in text.split()]


def _tree_by_scan(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat.ppid, []).append(stat.pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def tree_pids(root: int) -> list[int]:
    """``root`` and its live descendants (empty when ``root`` has gone)."""
    if not (PROC / str(root)).is_dir():
        return []
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        children = _children(pid)
        if children is None:  # no CONFIG_PROC_CHILDREN: scan every process's parent instead
            return _tree_by_scan(root)
        tree.append(pid)
        todo.extend(children)
    return tree


def process_tree(root: int) -> dict[int, ProcessStat]:
    """The stat of ``root`` and of every live descendant, by pid."""
    stats = {pid: read_stat(pid) for pid in tree_pids(root)}
    return {pid: stat for pid, stat in stats.items() if stat is not None}


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and its descendants, reaped ones included."""
    return sum(stat.cpu_s for stat in process_tree(root).values())


def parse_statm_rss(text: str, page_bytes: int = PAGE_BYTES) -> int:
    """Resident bytes from a ``/proc/<pid>/statm`` line (second field, in pages)."""
    return int(text.split()[1]) * page_bytes


def parse_pss(text: str) -> int | None:
    """Proportional set size in bytes from ``/proc/<pid>/smaps_rollup`` text, if listed."""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def role(pid: int, root: int) -> str:
    """What a process of the gateway's tree is, for the memory breakdown."""
    if pid == root:
        return "gateway"
    cmdline = (_read(PROC / str(pid) / "cmdline") or "").replace("\0", " ")
    if "resource_tracker" in cmdline:
        return "resource tracker"
    return "decode workers" if "spawn_main" in cmdline else "other children"


@dataclass(frozen=True)
class TreeMemory:
    """One sample of a process tree's memory, in bytes."""

    rss: int
    pss: int | None  # None when not read (or not offered by the kernel)
    rss_by_role: dict[str, int]


def tree_memory(root: int, *, with_pss: bool) -> TreeMemory:
    """Summed RSS (and PSS) of ``root`` and its live descendants, with RSS by role."""
    by_role: dict[str, int] = {}
    pss, pss_known = 0, with_pss
    for pid in tree_pids(root):
        statm = _read(PROC / str(pid) / "statm")
        if statm is None:
            continue
        name = role(pid, root)
        by_role[name] = by_role.get(name, 0) + parse_statm_rss(statm)
        if with_pss:
            rollup = _read(PROC / str(pid) / "smaps_rollup")
            value = parse_pss(rollup) if rollup is not None else None
            pss_known = pss_known and value is not None
            pss += value or 0
    return TreeMemory(sum(by_role.values()), pss if pss_known else None, by_role)


class MemorySampler:
    """Samples a process tree's memory in a thread; keeps the peaks (a context manager)."""

    def __init__(self, root: int, interval_s: float = 0.05, pss_every: int = 5) -> None:
        self.root = root
        self.interval_s = interval_s
        self.pss_every = pss_every  # smaps_rollup walks page tables: read it less often
        self.start_rss = 0
        self.peak_rss = 0
        self.peak_pss: int | None = None
        self.peak_by_role: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with_pss = self.samples % self.pss_every == 0
            sample = tree_memory(self.root, with_pss=with_pss)
            if self.samples == 0:
                self.start_rss = sample.rss
            if sample.rss > self.peak_rss:
                self.peak_rss, self.peak_by_role = sample.rss, sample.rss_by_role
            if sample.pss is not None:
                self.peak_pss = max(self.peak_pss or 0, sample.pss)
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


class CpuMeter:
    """CPU seconds a process tree spends between ``start()`` and ``stop()``.

    Descendants born in between count in full; ones that died unreaped in between are
    missed, which the gateway's long-lived workers never do.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self._before: dict[int, float] = {}
        self.cpu_s = 0.0
        self.root_cpu_s = 0.0  # the root process alone (its reaped children excluded)
        self.wall_s = 0.0
        self._began = 0.0
        self._root_before = 0.0

    def start(self) -> None:
        tree = process_tree(self.root)
        self._before = {pid: stat.cpu_s for pid, stat in tree.items()}
        root = tree.get(self.root)
        self._root_before = root.user_s + root.system_s if root is not None else 0.0
        self._began = time.perf_counter()

    def read(self) -> float:
        """CPU seconds spent since :meth:`start`, without stopping."""
        after = process_tree(self.root)
        return sum(stat.cpu_s - self._before.get(pid, 0.0) for pid, stat in after.items())

    def stop(self) -> float:
        """Returns (and keeps in ``cpu_s``) the CPU seconds spent since :meth:`start`."""
        self.wall_s = time.perf_counter() - self._began
        after = process_tree(self.root)
        self.cpu_s = sum(stat.cpu_s - self._before.get(pid, 0.0) for pid, stat in after.items())
        root = after.get(self.root)
        if root is not None:
            self.root_cpu_s = root.user_s + root.system_s - self._root_before
        return self.cpu_s

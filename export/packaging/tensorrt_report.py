"""The plain-Python side of ``bonemets export tensorrt``: profile, parity figures, reports.

Nothing here needs TensorRT or a GPU: :mod:`export.packaging.tensorrt_export` builds and runs the
engine and hands its outputs and timings to these functions; the engine's config.pbtxt is
:mod:`export.packaging.tensorrt_config`'s.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from api.inference.contract import INPUT_NAME, INPUT_SIZE
from api.inference.processing import unpack_mask

__all__ = [
    "MIN_DICE",
    "Parity",
    "Profile",
    "TensorrtReport",
    "Throughput",
    "compare_outputs",
    "mask_dice",
    "report_markdown",
    "report_section",
    "write_report_section",
]

MIN_DICE = 0.99
# FP16 logits move a probability level now and then; a systematic shift moves them all.
MAX_PROBABILITY_MEAN_DIFFERENCE = 1.0
SECTION_BEGIN = "<!-- bonemets export tensorrt: begin -->"
SECTION_END = "<!-- bonemets export tensorrt: end -->"


@dataclass(frozen=True)
class Profile:
    """The engine's optimisation profile over the batch axis of ``HU`` (N, 512, 512)."""

    minimum: int = 1
    optimum: int = 16
    maximum: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.optimum <= self.maximum:
            raise ValueError(
                f"batch sizes must satisfy 1 <= min <= opt <= max, got "
                f"{self.minimum}, {self.optimum}, {self.maximum}"
            )

    def shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Minimum, optimum and maximum ``HU`` shapes, as TensorRT's ``set_shape`` takes them."""
        sizes = (self.minimum, self.optimum, self.maximum)
        return tuple((n, INPUT_SIZE, INPUT_SIZE) for n in sizes)

    def covers(self, batch: int) -> bool:
        """Whether the engine accepts a batch of ``batch`` slices."""
        return self.minimum <= batch <= self.maximum


@dataclass(frozen=True)
class Throughput:
    """``iterations`` engine runs of ``batch`` slices took ``seconds``."""

    batch: int
    iterations: int
    seconds: float

    @property
    def slices_per_second(self) -> float:
        return self.batch * self.iterations / self.seconds

    @property
    def ms_per_batch(self) -> float:
        return 1000.0 * self.seconds / self.iterations


@dataclass(frozen=True)
class Parity:
    """The engine's outputs against ONNX Runtime's on the same slices."""

    slices: int
    dice: float | None  # pooled over all slices; None where both masks are empty everywhere
    engine_pixels: int
    reference_pixels: int
    probability_mean_difference: float  # in levels of 255
    probability_max_difference: int

    @property
    def ok(self) -> bool:
        """Dice >= 0.99 (when defined) and probabilities within a level on average."""
        dice_ok = self.dice is None or self.dice >= MIN_DICE
        return dice_ok and self.probability_mean_difference <= MAX_PROBABILITY_MEAN_DIFFERENCE


def mask_dice(first: npt.NDArray[np.bool_], second: npt.NDArray[np.bool_]) -> float | None:
    """2|A and B| / (|A| + |B|) over every pixel; None when both masks are empty."""
    if first.shape != second.shape:
        raise ValueError(f"mask shapes differ: {first.shape} and {second.shape}")
    total = int(np.count_nonzero(first)) + int(np.count_nonzero(second))
    if total == 0:
        return None
    return 2.0 * int(np.count_nonzero(first & second)) / total


def compare_outputs(
    engine: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]],
    reference: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]],
) -> Parity:
    """Parity of two (packed MASK, PROBABILITY) pairs of the same slices."""
    engine_mask = unpack_mask(engine[0], INPUT_SIZE)
    reference_mask = unpack_mask(reference[0], INPUT_SIZE)
    gap = np.abs(engine[1].astype(np.int16) - reference[1].astype(np.int16))
    return Parity(
        slices=len(engine_mask),
        dice=mask_dice(engine_mask, reference_mask),
        engine_pixels=int(np.count_nonzero(engine_mask)),
        reference_pixels=int(np.count_nonzero(reference_mask)),
        probability_mean_difference=float(gap.mean()) if gap.size else 0.0,
        probability_max_difference=int(gap.max()) if gap.size else 0,
    )


@dataclass
class TensorrtReport:
    """What one ``bonemets export tensorrt`` run built, checked and measured."""

    date: str
    gpu: str
    tensorrt: str
    builder: str  # "python" or "trtexec"
    onnx: str
    plan: str
    profile: Profile
    workspace_gb: float
    parity_seeds: tuple[int, ...] = ()
    parity: Parity | None = None
    throughput: list[Throughput] = field(default_factory=list)
    installed: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; parity and throughput carry their derived figures too."""
        data = asdict(self)
        data["profile"]["shapes"] = [list(shape) for shape in self.profile.shapes()]
        data["parity_seeds"] = list(self.parity_seeds)
        if self.parity is not None:
            data["parity"]["ok"] = self.parity.ok
            data["parity"]["min_dice"] = MIN_DICE
        for row, measured in zip(data["throughput"], self.throughput, strict=True):
            row["slices_per_second"] = round(measured.slices_per_second, 1)
            row["ms_per_batch"] = round(measured.ms_per_batch, 3)
        return data

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def _parity_line(report: TensorrtReport) -> str:
    parity = report.parity
    if parity is None:
        return "Parity with ONNX Runtime: not checked."
    dice = "undefined (both masks empty)" if parity.dice is None else f"{parity.dice:.4f}"
    seeds = report.parity_seeds
    source = f"phantom seeds {seeds[0]}-{seeds[-1]}" if seeds else "given slices"
    return (
        f"Parity with ONNX Runtime (CPU) on {parity.slices} held-out slices ({source}): "
        f"mask Dice {dice} (engine {parity.engine_pixels} px, ONNX Runtime "
        f"{parity.reference_pixels} px; pass >= {MIN_DICE}); PROBABILITY mean |difference| "
        f"{parity.probability_mean_difference:.3f} levels, max {parity.probability_max_difference}"
        f" -> {'pass' if parity.ok else 'FAIL'}."
    )


def report_markdown(report: TensorrtReport) -> str:
    """A markdown section: engine, machine, parity, and slices per second by batch size."""
    shapes = ", ".join(
        f"{label} {'x'.join(map(str, shape))}"
        for label, shape in zip(("min", "opt", "max"), report.profile.shapes(), strict=True)
    )
    lines = [
        "## TensorRT engine",
        "",
        f"_Written by `bonemets export tensorrt` on {report.date}._",
        "",
        f"GPU: {report.gpu}; TensorRT {report.tensorrt} ({report.builder} builder); FP16; "
        f"workspace {report.workspace_gb:g} GiB; profile {INPUT_NAME} {shapes}.",
        f"Engine: `{report.plan}` from `{report.onnx}`.",
        "",
        _parity_line(report),
        "",
    ]
    if report.throughput:
        lines += [
            "Engine compute only (tensors resident on the GPU, no host transfers):",
            "",
            "| Batch | Slices/s | ms per batch | Iterations |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {t.batch} | {t.slices_per_second:.1f} | {t.ms_per_batch:.3f} | {t.iterations} |"
            for t in report.throughput
        ]
    return "\n".join(lines) + "\n"


def marked_section(text: str, begin: str, end: str) -> str | None:
    """The section of ``text`` between the markers ``begin`` and ``end``, markers included,
    or None where it has none."""
    found = re.search(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", text, re.S)
    return found.group(0).rstrip("\n") + "\n" if found else None


def write_marked_section(path: Path, section: str, begin: str, end: str,
                         before: str | None = None) -> None:
    """Put ``section`` between the markers in ``path``, replacing an earlier one; a new one
    goes before the marker ``before`` where the page has it, else at the end."""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    elif before is not None and before in text:
        head, _, tail = text.partition(before)
        text = head.rstrip() + "\n\n" + block + "\n" + before + tail
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def report_section(text: str) -> str | None:
    """This command's section of a page, markers included, or None where it has none.

    ``bonemets bench --update-docs`` rewrites the benchmarks page whole and keeps this.
    """
    return marked_section(text, SECTION_BEGIN, SECTION_END)


def write_report_section(path: Path, section: str) -> None:
    """Put ``section`` between this command's markers in ``path``, replacing an earlier one."""
    write_marked_section(path, section, SECTION_BEGIN, SECTION_END)

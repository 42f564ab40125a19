"""The tensor contract between the gateway and the segmentation model.

One place names the tensors, their types and shapes, so that the gateway, the Triton
Python-backend model, the in-process ONNX Runtime model and the export tooling agree.

Input ``HU``: int16 Hounsfield units, shape (N, 512, 512), on the CPU (Python-backend) model;
float16 on the GPU models (TensorRT takes no int16; float16 holds every integer up to 2048
exactly, and the bone window clips at 1300). The gateway sends the type the model's metadata
names. Windowing is the model's own first step, so half the bytes of float32 travel and the
window has one home (the model's parameters, written at export from the training config).

Outputs (per slice):
  ``MASK``        uint8 (N, 512, 64): the thresholded mask, bits packed along x with
                  ``numpy.packbits(axis=-1)`` (most significant bit first): 32 KiB a slice.
  ``PROBABILITY`` uint8 (N, 128, 128): sigmoid probability x 255, max-pooled over 4x4
                  pixel blocks (the decoder's own stride), for lesion scores and FROC.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL_NAME = "bonemets"
INPUT_NAME = "HU"
MASK_OUTPUT = "MASK"
PROBABILITY_OUTPUT = "PROBABILITY"
INPUT_SIZE = 512
PROBABILITY_STRIDE = 4
MAX_BATCH_SIZE = 32

# The ONNX network inside: float32 window-normalised image in, logits out.
ONNX_INPUT = "image"
ONNX_OUTPUT = "logits"


@dataclass(frozen=True)
class Window:
    """A CT display window in HU: values below ``level - width/2`` map to 0, above to 1."""

    level: float
    width: float

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise ValueError(f"window width must be positive, got {self.width}")

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2

    def __str__(self) -> str:
        return f"{self.level:g}:{self.width:g}"

    @classmethod
    def parse(cls, text: str) -> Window:
        """Parse ``"LEVEL:WIDTH"`` (e.g. ``"400:1800"``)."""
        try:
            level, width = (float(part) for part in text.split(":"))
        except ValueError as exc:
            raise ValueError(f"window must be 'LEVEL:WIDTH', got {text!r}") from exc
        return cls(level, width)


# Bone window: level 400 HU, width 1800 HU (-500 .. 1300 HU). Wide enough to keep lytic
# lesions (0-100 HU) apart from fat and air, and blastic ones (700-1500 HU) apart from
# trabecular bone, while cortical bone saturates.
BONE_WINDOW = Window(level=400.0, width=1800.0)
DEFAULT_THRESHOLD = 0.5


def format_windows(windows: tuple[Window, ...]) -> str:
    """Windows as a Triton parameter string, ``"400:1800,40:400"``."""
    return ",".join(str(w) for w in windows)


def parse_windows(text: str) -> tuple[Window, ...]:
    """Inverse of :func:`format_windows`; one window per input channel."""
    windows = tuple(Window.parse(part) for part in text.split(",") if part.strip())
    if not windows:
        raise ValueError("at least one window is required")
    return windows

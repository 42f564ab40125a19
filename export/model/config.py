"""The architecture hyper-parameters of the bone-metastasis DeepLabV3+, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Norm = Literal["batch", "group"]
SUPPORTED_DEPTHS = (18, 34, 50)
SUPPORTED_OUTPUT_STRIDES = (8, 16)
MAX_CONTEXT = 2  # planes each side: 3 or 5 planes in all, as issue 25 asks


@dataclass(frozen=True)
class ModelConfig:
    """Everything :func:`export.model.build_model` needs; round-trips through a dict.

    ``width`` scales every channel count (0.25 gives a 16-channel stem instead of 64).
    ``norm`` is the normalisation of the encoder, ASPP and decoder ("batch" folds into the
    convolutions at export; "group" behaves the same at any batch size).
    ``low_level_channels`` defaults to 48 x width (48 at width 1), as in DeepLabV3+.
    ``decoder_channels`` is the width of the ASPP and decoder convolutions; it defaults to
    256 x width, as in DeepLabV3+. Setting it apart from ``width`` moves compute between the
    encoder and the decoder: at width 0.5 a decoder of 64 (not 128) keeps two thirds of the
    speed of width 0.25 while doubling every encoder channel.
    ``head_prior`` sets the initial bias of the logit so a fresh model predicts that
    probability everywhere: metastases are rare, and a 0.5 start floods the loss.
    ``context`` is the number of neighbour planes each side of the segmented slice (0: a 2D
    model), ``context_spacing_mm`` their distance apart in z; the input then holds
    ``in_channels`` = (2 x context + 1) x windows channels, plane-major
    (:func:`export.model.planes.plane_channels`).
    """

    depth: int = 18
    width: float = 0.25
    in_channels: int = 1
    output_stride: int = 16
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    norm: Norm = "batch"
    low_level_channels: int | None = None
    decoder_channels: int | None = None
    aspp_dropout: float = 0.1
    head_prior: float | None = 0.01
    context: int = 0
    context_spacing_mm: float = 2.5

    def __post_init__(self) -> None:
        if self.depth not in SUPPORTED_DEPTHS:
            raise ValueError(f"depth must be one of {SUPPORTED_DEPTHS}, got {self.depth}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.output_stride not in SUPPORTED_OUTPUT_STRIDES:
            raise ValueError(
                f"output_stride must be one of {SUPPORTED_OUTPUT_STRIDES}, got {self.output_stride}"
            )
        if not self.aspp_rates or any(rate < 1 for rate in self.aspp_rates):
            raise ValueError(f"aspp_rates must be positive integers, got {self.aspp_rates}")
        if self.norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {self.norm!r}")
        if self.head_prior is not None and not 0 < self.head_prior < 1:
            raise ValueError(f"head_prior must be in (0, 1), got {self.head_prior}")
        if self.decoder_channels is not None and (
            not isinstance(self.decoder_channels, int) or self.decoder_channels < 8
        ):
            raise ValueError(
                f"decoder_channels must be a whole number >= 8, got {self.decoder_channels!r}"
            )
        if not 0 <= self.context <= MAX_CONTEXT:
            raise ValueError(
                f"context must be 0..{MAX_CONTEXT} planes each side, got {self.context}"
            )
        if not self.context_spacing_mm > 0:
            raise ValueError(f"context_spacing_mm must be > 0, got {self.context_spacing_mm}")
        if self.in_channels % self.planes:
            raise ValueError(
                f"in_channels {self.in_channels} is not a multiple of the {self.planes} planes "
                f"of context {self.context}"
            )
        if not 0 <= self.aspp_dropout < 1:
            raise ValueError(f"aspp_dropout must be in [0, 1), got {self.aspp_dropout}")

    @property
    def planes(self) -> int:
        """Planes the network sees per output slice: the slice and its neighbours."""
        return 2 * self.context + 1

    def scaled(self, channels: int) -> int:
        """``channels`` x width, rounded to a multiple of 8 (at least 8)."""
        return max(8, int(round(channels * self.width / 8)) * 8)

    @property
    def aspp_channels(self) -> int:
        """Channels of the ASPP branches and the decoder (256 x width unless set)."""
        if self.decoder_channels is not None:
            return self.decoder_channels
        return self.scaled(256)

    @property
    def low_level_projection(self) -> int:
        """Channels of the decoder's low-level projection (48 at width 1)."""
        if self.low_level_channels is not None:
            return self.low_level_channels
        return max(8, int(round(48 * self.width / 4)) * 4)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples become lists)."""
        data = asdict(self)
        data["aspp_rates"] = list(self.aspp_rates)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        values = dict(data)
        if "aspp_rates" in values:
            values["aspp_rates"] = tuple(int(rate) for rate in values["aspp_rates"])
        return cls(**values)

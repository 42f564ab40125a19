"""Decoding a batch of slices into the model's input, in a worker process."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from api.dicom.geometry import ResizeMapping, resize_to_model
from api.dicom.series import SliceRef, load_slice_hounsfield


@dataclass
class DecodedBatch:
    """Consecutive slices ``start .. start+N-1`` as int16 HU at the model's size."""

    start: int
    refs: list[SliceRef]
    hounsfield: npt.NDArray[np.int16]
    mappings: list[ResizeMapping]
    decode_cpu_s: float
    wall_decode_s: float = field(default=0.0)
    inference_s: float = field(default=0.0)


def decode_batch(start: int, refs: list[SliceRef], size: int) -> DecodedBatch:
    """Decode, convert to HU and fit each slice to ``size`` x ``size`` (picklable, pure)."""
    began = time.process_time()
    stack = np.empty((len(refs), size, size), dtype=np.int16)
    mappings = []
    for i, ref in enumerate(refs):
        fitted, mapping = resize_to_model(load_slice_hounsfield(ref), size)
        stack[i] = fitted
        mappings.append(mapping)
    return DecodedBatch(start, refs, stack, mappings, time.process_time() - began)

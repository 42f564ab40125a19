"""Decoding a batch of slices into the model's input, in a worker process."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory

from api.dicom.geometry import ResizeMapping, resize_to_model
from api.dicom.slices import SliceRef, load_slice_hounsfield
from api.study.decode_slots import SlotAddress, slot_array


@dataclass
class DecodedBatch:
    """Consecutive slices ``start .. start+N-1``, decoded into a slot as int16 HU at the
    model's size; only this metadata crosses back from the worker."""

    start: int
    mappings: list[ResizeMapping]
    decode_cpu_s: float
    wall_decode_s: float = field(default=0.0)
    inference_s: float = field(default=0.0)


def decode_batch(start: int, refs: list[SliceRef], size: int, slot: SlotAddress) -> DecodedBatch:
    """Decode, convert to HU and fit each slice to ``size`` x ``size``, into the shared
    memory at ``slot`` (picklable, pure but for that write)."""
    began = time.process_time()
    stack = slot_array(_mapped(slot.block).buf, slot, len(refs), size)
    mappings = []
    for i, ref in enumerate(refs):
        if (ref.geometry.rows, ref.geometry.columns) == (size, size):
            load_slice_hounsfield(ref, out=stack[i])  # no copy: straight into the slot
            mapping = ResizeMapping.fit((size, size), size)
        else:
            stack[i], mapping = resize_to_model(load_slice_hounsfield(ref), size)
        mappings.append(mapping)
    return DecodedBatch(start, mappings, time.process_time() - began)


@functools.lru_cache(maxsize=2)
def _mapped(block: str) -> SharedMemory:
    """The pool's block, mapped once per worker process: mapping it afresh each batch cost a
    page fault for every 4 KiB written. (Two, for the moment a pool replaces its block.)"""
    return SharedMemory(block)

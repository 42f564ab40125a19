"""Overlays drawn when asked for: the stored slice in the model's window, mask outlines, boxes."""

from __future__ import annotations

from typing import Literal

from api.dicom.series import load_slice_hounsfield
from api.inference.contract import Window
from api.lesions.render import overlay_png
from api.schemas import SliceResult, StudyResult
from api.study.results import half_open
from api.study.series_record import series_on_disk
from api.study.storage import StudyStore

# The windows a reader can ask an overlay in: the model's own (a bone window), or the usual
# soft-tissue one (L 40, W 400 HU), to see what a lesion has grown into.
OverlayWindow = Literal["model", "soft-tissue"]
SOFT_TISSUE = Window(level=40.0, width=400.0)


def render_overlay(store: StudyStore, job_id: str, result: StudyResult,
                   entry: SliceResult, window_name: OverlayWindow = "model") -> bytes:
    """PNG of slice ``entry`` of a finished job (decodes that one slice from the upload)."""
    index = entry.index
    # Decoded exactly as the model's input was, from the upload kept with the result (its
    # one file fetched, where the upload is in a bucket).
    with series_on_disk(store, job_id, [index]) as series:
        hounsfield = load_slice_hounsfield(series.slices[index])
    mask = store.read_mask(job_id, index, (entry.rows, entry.columns))
    first = result.model.windows[0]
    window = Window(level=first.level, width=first.width) if window_name == "model" \
        else SOFT_TISSUE
    return overlay_png(hounsfield, mask, window, [half_open(box) for box in entry.boxes])

"""Overlays drawn when asked for: the stored slice in the model's window, mask outlines, boxes."""

from __future__ import annotations

import json
from typing import Any

from api.dicom.pixels import decode_hounsfield
from api.errors import StorageError
from api.inference.contract import Window
from api.lesions.components import PixelBox
from api.lesions.render import overlay_png
from api.storage import StudyStore


def render_overlay(store: StudyStore, job_id: str, result: dict[str, Any],
                   entry: dict[str, Any]) -> bytes:
    """PNG of slice ``entry`` of a finished job (decodes that one slice from the upload)."""
    index = entry["index"]
    try:
        locations = json.loads((store.job_dir(job_id) / "index.json").read_text())
        relative, frame = locations[index]
    except (OSError, ValueError, IndexError) as exc:
        raise StorageError(f"the slice index of job {job_id} cannot be read") from exc
    hounsfield = decode_hounsfield(store.upload_dir(job_id) / relative, frame)
    mask = store.read_mask(job_id, index, (entry["rows"], entry["columns"]))
    window = Window(**result["model"]["windows"][0])
    boxes = [PixelBox(b["row_min"], b["col_min"], b["row_max"] + 1, b["col_max"] + 1)
             for b in entry["boxes"]]
    return overlay_png(hounsfield, mask, window, boxes)

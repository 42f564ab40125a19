"""The viewer page: one self-contained HTML page for a finished study, its data inline.

The page is opened by a signed link as often as with a key, and a browser sends no
``Authorization`` header when it follows a link: so nothing is fetched by script. The study's
slices, lesions and the overlays' own signed links are written into the page, and the images
are plain ``<img>`` loads of those links. Nothing comes from anywhere else (no CDN: a hospital
network may have none), which the Content-Security-Policy also says.
"""

from __future__ import annotations

import html
import json
import secrets
from functools import cache
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlsplit

from api.schemas import StudyResult

PAGE = "viewer.html"


@cache
def _template() -> Template:
    return Template(resources.files("api.http").joinpath("static", PAGE).read_text("utf-8"))


def page_data(result: StudyResult) -> dict[str, Any]:
    """What the page's script reads: each slice with its overlay link and the lesions on it,
    and each lesion with the slice where it is largest (where a click on it goes)."""
    slices = sorted(result.slices, key=lambda s: s.index)
    position = {entry.index: k for k, entry in enumerate(slices)}
    largest: dict[int, tuple[int, int]] = {}  # lesion id -> (pixels, slice position)
    for entry in slices:
        for box in entry.boxes:
            if box.lesion_id is not None:
                seen = largest.get(box.lesion_id, (-1, 0))
                largest[box.lesion_id] = max(seen, (box.pixels, position[entry.index]),
                                             key=lambda p: p[0])
    return {
        "slices": [{
            "index": entry.index, "z_mm": entry.z_mm, "overlay_url": entry.overlay_url,
            "lesions": sorted({b.lesion_id for b in entry.boxes if b.lesion_id is not None}),
        } for entry in slices],
        "lesions": [{
            "id": lesion.id, "slice_range": list(lesion.slice_range),
            "key_slice": largest.get(lesion.id, (0, position.get(lesion.slice_range[0], 0)))[1],
            "longest_axial_diameter_mm": lesion.longest_axial_diameter_mm,
            "volume_ml": lesion.volume_ml, "probability_max": lesion.probability_max,
        } for lesion in result.lesions],
    }


def render_viewer(job_id: str, result: StudyResult) -> tuple[str, str]:
    """The page, and the nonce its inline style and script run under."""
    nonce = secrets.token_urlsafe(16)
    # JSON inside <script>: no "</script>" or "<!--" can close or bend it.
    data = json.dumps(page_data(result), separators=(",", ":")).replace("<", "\\u003c")
    model = result.model
    page = _template().substitute(
        nonce=nonce, data=data, short_id=job_id[:8],
        model_line=html.escape(f"Model {model.name} {model.version}"),
    )
    return page, nonce


def security_headers(nonce: str, public_url: str) -> dict[str, str]:
    """What the browser is told: only this page's own script and style run, images only from
    the service (its public origin too, where links are absolute), and the page's signed URL
    never leaves in a Referer."""
    origin = urlsplit(public_url)
    # data: is the page's empty favicon, which keeps the browser from asking for one.
    images = "'self' data:" + (f" {origin.scheme}://{origin.netloc}" if origin.netloc else "")
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; img-src {images}; style-src 'nonce-{nonce}';"
            f" script-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none';"
            " frame-ancestors 'none'"),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }

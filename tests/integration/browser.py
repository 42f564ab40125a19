"""Debian's chromium driven by playwright (through its executable_path: playwright's own
browser download is never used), and what the viewer tests read off its screen."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from api.lesions.render import OUTLINE_RGB

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Watched:
    """What the page did besides what the test asked: errors, and requests to elsewhere."""

    errors: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)


@contextmanager
def viewer_page(base: str) -> Iterator[tuple[Any, Watched]]:
    """A fresh page of a headless chromium, watched for errors and requests off ``base``."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None
    watched = Watched()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 820})
            page.on("console", lambda m: watched.errors.append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: watched.errors.append(str(e)))
            page.on("request", lambda r: None if r.url.startswith(base)
                    else watched.elsewhere.append(r.url))
            yield page, watched
        finally:
            browser.close()


def red_pixels(png: bytes) -> int:
    """Pixels of the outline's red in a screenshot (scaled by the browser: near, not equal)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(rgb - np.array(OUTLINE_RGB)).max(axis=-1) < 60).sum())


def shown_slice(page: Any) -> int:
    """The index of the slice the page shows, once its image has loaded."""
    page.wait_for_function("() => { const i = document.getElementById('slice');"
                           " return i.complete && i.naturalWidth > 0; }")
    return int(page.get_attribute("#slice", "data-slice-index"))


def largest_slices(result: dict[str, Any], lesion_id: int) -> set[int]:
    """The slices where the result's lesion ``lesion_id`` has the most pixels."""
    sizes = {entry["index"]: box["pixels"] for entry in result["slices"]
             for box in entry["boxes"] if box["lesion_id"] == lesion_id}
    return {index for index, pixels in sizes.items() if pixels == max(sizes.values())}

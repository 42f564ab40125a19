"""The viewer page in a real headless Chromium (Debian's, driven by playwright): opened by
the job's signed link with no key, a click on a lesion shows the slice where it is largest
with its outline drawn; keys, the wheel and the window buttons move and redraw it; nothing
is fetched from anywhere but the service, and the browser reports no error (a script or
style the Content-Security-Policy refused would be one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.config import Settings
from tests.api.conftest import build_series
from tests.api.fakes import BrightBoneModel
from tests.api.test_dimse import free_port
from tests.integration.browser import (
    CHROMIUM,
    largest_slices,
    red_pixels,
    shown_slice,
    viewer_page,
)
from tests.integration.served import api_key, bonemets

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium here: `make system-packages` installs Debian's")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """A served gateway and one finished phantom study with a lesion over three slices (one
    for the module: its tests only read)."""
    tmp_path = tmp_path_factory.mktemp("viewer")
    # Its lesion measures 4.6 mm, under the default reporting floor, which is not tested here.
    settings = Settings(data_dir=tmp_path / "data", port=free_port(), decode_workers=1,
                        batch_size=4, reporting_floor_mm=0.0)
    series = build_series(tmp_path / "series", slices=8, size=256, lesion_slices=(3, 5))
    key = api_key(settings, "viewer-test")
    with bonemets(settings, BrightBoneModel()) as base:
        files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in series.paths]
        job = httpx.post(f"{base}/v1/studies?wait=60", files=files, timeout=90,
                         headers={"Authorization": f"Bearer {key}"}).json()
        assert job["state"] == "succeeded" and len(job["result"]["lesions"]) == 1
        yield base, job


def test_a_click_on_a_lesion_shows_its_largest_slice_with_the_outline(
        finished: tuple[str, dict[str, Any]]) -> None:
    base, job = finished
    lesion = job["result"]["lesions"][0]
    largest = largest_slices(job["result"], lesion["id"])
    with viewer_page(base) as (page, watched):
        # The signed link alone: a browser following a link sends no key.
        page.goto(base + job["viewer_url"])
        rows = page.locator("#lesions tbody tr")
        assert rows.count() == 1
        assert rows.first.locator("td").nth(1).inner_text() == (
            f"{lesion['slice_range'][0] + 1}–{lesion['slice_range'][1] + 1}")

        page.keyboard.press("Home")
        assert shown_slice(page) == 0
        assert red_pixels(page.locator("#slice").screenshot()) == 0  # nothing there
        page.keyboard.press("ArrowDown")
        assert shown_slice(page) == 1
        page.locator("#slice").hover()
        page.mouse.wheel(0, 120)
        assert shown_slice(page) == 2

        rows.first.click()
        assert shown_slice(page) in largest
        bone = page.locator("#slice").screenshot()
        assert red_pixels(bone) > 0  # the overlay is drawn, not blank
        assert "lesion 1" in page.inner_text("#position")

        page.click("button[data-window='soft-tissue']")
        page.wait_for_function("() => document.getElementById('slice').src"
                               ".includes('window=soft-tissue')")
        assert shown_slice(page) in largest
        soft = page.locator("#slice").screenshot()
        assert red_pixels(soft) > 0 and soft != bone
    assert watched.errors == [] and watched.elsewhere == []


def test_the_page_needs_the_link_or_a_key(finished: tuple[str, dict[str, Any]]) -> None:
    base, job = finished
    plain = httpx.get(f"{base}/v1/studies/{job['id']}/viewer")
    signed = httpx.get(base + job["viewer_url"])
    assert plain.status_code == 401
    assert signed.status_code == 200 and signed.headers["content-type"].startswith("text/html")
    policy = signed.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'nonce-" in policy
    assert signed.headers["referrer-policy"] == "no-referrer"
    assert "http://" not in signed.text.split("<script type=\"application/json\"")[0]

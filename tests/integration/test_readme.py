"""The README's "Try it": its commands, run on the shipped model, give the answer it shows.

The phantom command is read from the README's shell block and the sample answer from its
JSON block, so neither can change without the other: every value the sample shows must be
the value the live gateway (real uvicorn, real tritonserver serving ``model_repository/``)
returns. A list that holds ``"..."`` is abridged: its other items are matched by their
``id`` (lesions) or ``index`` (slices); a value ``"..."`` is not compared.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.cli import main as bonemets
from api.inference.contract import MODEL_NAME
from api.tritonserver.launcher import LocalTriton, TritonDistribution, TritonStartError, free_ports
from tests.conftest import REPO_ROOT
from tests.integration.browser import (
    CHROMIUM,
    largest_slices,
    red_pixels,
    shown_slice,
    viewer_page,
)
from tests.integration.test_gateway import Gateway, start_gateway, stop_gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = REPO_ROOT / "README.md"


def _readme_blocks() -> tuple[list[str], dict[str, Any]]:
    """The phantom command's arguments and the sample answer, as the README has them."""
    text = README.read_text()
    try_it = text[text.index("## Try it"):]
    command = next(line for line in try_it.splitlines() if " phantom " in line)
    args = shlex.split(command.split("#")[0])
    block = re.search(r"```json\n(.*?)```", try_it, re.S)
    assert block is not None, "the README's Try it has no JSON answer"
    return args[args.index("phantom"):], json.loads(block.group(1))


def _match(shown: Any, actual: Any, where: str) -> None:
    if shown == "...":
        return
    if isinstance(shown, str) and shown.endswith("..."):
        # A value the README shows only the start of (a signed link: its query is new on
        # every answer).
        assert isinstance(actual, str) and actual.startswith(shown[:-3]), (
            f"{where}: README shows {shown!r}, the service answers {actual!r}")
        return
    if isinstance(shown, dict):
        assert isinstance(actual, dict), where
        for key, value in shown.items():
            assert key in actual, f"{where}.{key} is not in the answer"
            _match(value, actual[key], f"{where}.{key}")
    elif isinstance(shown, list):
        assert isinstance(actual, list), where
        if "..." not in shown:
            assert len(shown) == len(actual), f"{where}: README shows {len(shown)} items"
            for i, (a, b) in enumerate(zip(shown, actual, strict=True)):
                _match(a, b, f"{where}[{i}]")
            return
        for item in (i for i in shown if i != "..."):
            key = "id" if "id" in item else "index"
            found = [a for a in actual if a.get(key) == item[key]]
            assert found, f"{where}: no item with {key} {item[key]}"
            _match(item, found[0], f"{where}[{key}={item[key]}]")
    else:
        assert shown == actual, f"{where}: README shows {shown!r}, the service answers {actual!r}"


@pytest.fixture(scope="module")
def shipped_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway in front of a local Triton serving the committed model repository."""
    try:
        TritonDistribution.find()
    except TritonStartError as exc:
        pytest.skip(str(exc))
    grpc_port, http_port, metrics_port = free_ports(3)
    with LocalTriton(REPO_ROOT / "model_repository", grpc_port=grpc_port, http_port=http_port,
                     metrics_port=metrics_port, models=[MODEL_NAME]) as triton:
        triton.wait_ready(timeout_s=180)
        process, live = start_gateway(triton.grpc_url, tmp_path_factory.mktemp("readme"))
        try:
            yield live
        finally:
            stop_gateway(process)


def test_the_readme_answer_is_what_its_commands_give(
    shipped_gateway: Gateway, tmp_path: Path
) -> None:
    phantom_args, shown = _readme_blocks()
    out = phantom_args[phantom_args.index("--out") + 1]
    phantom_args[phantom_args.index("--out") + 1] = str(tmp_path / "phantoms")
    assert bonemets(phantom_args) == 0
    study = tmp_path / "phantoms" / "study_0001" / "dicom"
    assert out.endswith("phantoms"), "the README's zip command reads study_0001 of that folder"
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        for path in sorted(study.glob("*.dcm")):
            archive.write(path, path.name)
    # The README's curl sends its key as `Authorization: Bearer`; so does this request.
    answer = httpx.post(f"{shipped_gateway.base}/v1/studies", params={"wait": 300},
                        timeout=320, headers=shipped_gateway.headers,
                        files={"files": ("study.zip", body.getvalue(), "application/zip")})
    assert answer.status_code == 200, answer.text
    actual = answer.json()
    # The job id is new on every run: the README's stands for it, in the urls too.
    shown_id = shown.pop("id")
    text = json.dumps(shown).replace(shown_id, actual["id"])
    _match(json.loads(text), actual, "answer")
    if CHROMIUM is not None:
        _see_in_the_viewer(shipped_gateway.base, actual, tmp_path / "viewer.png")


def _see_in_the_viewer(base: str, job: dict[str, Any], picture: Path) -> None:
    """The README's picture of the viewer: this study on the shipped model, its first lesion
    clicked (written to docs/images under ``BONEMETS_SCREENSHOTS``: make docs-images)."""
    lesions = job["result"]["lesions"]
    with viewer_page(base) as (page, watched):
        page.goto(base + job["viewer_url"])
        assert page.locator("#lesions tbody tr").count() == len(lesions)
        page.locator("#lesions tbody tr").first.click()
        assert shown_slice(page) in largest_slices(job["result"], lesions[0]["id"])
        assert red_pixels(page.locator("#slice").screenshot()) > 0
        page.screenshot(path=str(picture))
    assert watched.errors == [] and watched.elsewhere == []
    if folder := os.environ.get("BONEMETS_SCREENSHOTS"):
        shutil.copy(picture, Path(folder) / "viewer.png")

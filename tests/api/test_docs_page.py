"""/docs and /redoc work with the network cut: every asset comes from the gateway itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

# src/href attributes and url(...) in the page: whatever a browser would fetch for it.
_REFERENCES = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)""")
_EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def _references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCES.findall(html)]


@pytest.mark.parametrize(("page", "assets"), [
    ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
    ("/redoc", {"redoc.standalone.js", "favicon.png"}),
])
def test_docs_page_needs_no_internet(client: TestClient, page: str, assets: set[str]) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    html = answer.text
    assert "http://" not in html and "https://" not in html and '"//' not in html
    references = _references(html)
    assert {reference.rsplit("/", 1)[-1] for reference in references} == assets
    for reference in references:
        assert reference.startswith("/"), reference
        asset = client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 1000, reference
        suffix = "." + reference.rsplit(".", 1)[-1]
        assert _EXPECTED_TYPES[suffix] in asset.headers["content-type"], reference
    # The page loads the app's own spec, which is there too.
    assert re.search(r"""(url: |spec-url=)["']/openapi\.json["']""", html)
    assert client.get("/openapi.json").json()["info"]["title"] == "bonemets"


def test_swagger_ui_runs_without_online_validator(client: TestClient) -> None:
    html = client.get("/docs").text
    assert '"validatorUrl": null' in html
    assert client.get("/docs/oauth2-redirect").status_code == 200

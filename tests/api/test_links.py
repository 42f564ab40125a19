"""Signed result links: followed without credentials, refused when tampered or expired."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import links as signed_links
from api.auth.links import LinkSigner
from api.config import Settings
from api.http.app import create_app
from tests.api.callers import as_caller, with_callers
from tests.api.conftest import BuiltSeries, as_files, build_series
from tests.api.contract import CheckedClient
from tests.api.fakes import BrightBoneModel
from tests.api.stored import StorageUnderTest

OLD_KEY, NEW_KEY = "o" * 32, "n" * 32
INVALID = "urn:bonemets:problem:invalid-link"


@pytest.fixture
def small(tmp_path: Path) -> BuiltSeries:
    return build_series(tmp_path / "small", slices=3, lesion_slices=(1, 1))


def _app(data_dir: Path, **settings: Any) -> FastAPI:
    config = Settings(data_dir=data_dir, decode_workers=1, batch_size=2, **settings)
    return with_callers(create_app(config, model_factory=lambda _: BrightBoneModel()))


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return _app(tmp_path / "data")


@pytest.fixture
def api(app: FastAPI) -> Iterator[TestClient]:
    with CheckedClient(app, raise_server_exceptions=False, scopes=None) as client:
        yield client


def _result(api: TestClient, who: str, series: BuiltSeries) -> dict[str, Any]:
    response = api.post("/v1/studies?wait=60", files=as_files(series.paths),
                        headers=as_caller(who))
    assert response.status_code == 200, response.text
    return dict(response.json())


def _with(link: str, **changes: str) -> str:
    parts = urlsplit(link)
    pairs = parse_qs(parts.query, keep_blank_values=True).items()
    query = {key: values[0] for key, values in pairs}
    path = changes.pop("path", parts.path)
    return f"{path}?{urlencode({**query, **changes})}"


def test_a_link_opens_without_credentials_and_shows_what_the_key_shows(
    api: TestClient, small: BuiltSeries
) -> None:
    job = _result(api, "alice", small)
    entry = job["result"]["slices"][1]
    for kind in ("mask", "overlay"):
        link = entry[f"{kind}_url"]
        parts = urlsplit(link)
        assert parts.path == f"/v1/studies/{job['id']}/slices/1/{kind}.png"
        query = parse_qs(parts.query)
        assert query["client"] == ["alice"]
        assert time.time() < int(query["expires"][0]) <= time.time() + 3600 + 1
        by_link = api.get(link)
        assert by_link.status_code == 200, by_link.text
        by_key = api.get(parts.path, headers=as_caller("alice"))
        assert by_key.status_code == 200
        assert by_link.content == by_key.content
    # Neither a link nor credentials: refused (the plain client: 401 is authn's to document).
    assert TestClient.request(api, "GET", urlsplit(entry["mask_url"]).path).status_code == 401


def test_the_stored_result_keeps_plain_paths(api: TestClient, small: BuiltSeries,
                                             tmp_path: Path, storage: StorageUnderTest) -> None:
    job = _result(api, "alice", small)
    kept = storage.get(Settings(data_dir=tmp_path / "data"), f"studies/{job['id']}/result.json")
    assert kept is not None
    stored = json.loads(kept)
    assert stored["slices"][1]["mask_url"] == f"/v1/studies/{job['id']}/slices/1/mask.png"
    assert stored["slices"][1]["overlay_url"] == f"/v1/studies/{job['id']}/slices/1/overlay.png"
    # Apart from the links, the answer is the stored result.
    answered = job["result"]
    for entry in (*answered["slices"], *stored["slices"]):
        del entry["mask_url"], entry["overlay_url"]
    assert answered == stored


@pytest.mark.parametrize("change", [
    {"path": "slices/2/mask.png"}, {"path": "slices/1/overlay.png"}, {"client": "bob"},
    {"expires": "+1"}, {"signature": "flip"}, {"signature": ""},
])
def test_a_tampered_link_is_403(api: TestClient, small: BuiltSeries,
                                change: dict[str, str]) -> None:
    job = _result(api, "alice", small)
    link = job["result"]["slices"][1]["mask_url"]
    query = parse_qs(urlsplit(link).query)
    changes = dict(change)
    if "path" in changes:
        changes["path"] = f"/v1/studies/{job['id']}/{changes['path']}"
    if changes.get("expires") == "+1":
        changes["expires"] = str(int(query["expires"][0]) + 1)
    if changes.get("signature") == "flip":
        signature = query["signature"][0]
        changes["signature"] = ("A" if signature[0] != "A" else "B") + signature[1:]
    response = api.get(_with(link, **changes))
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == INVALID


def test_a_link_missing_a_part_is_403(api: TestClient, small: BuiltSeries) -> None:
    link = _result(api, "alice", small)["result"]["slices"][1]["mask_url"]
    parts = urlsplit(link)
    query = parse_qs(parts.query)
    for left_out in ("client", "expires", "signature"):
        kept = {key: values[0] for key, values in query.items() if key != left_out}
        response = api.get(f"{parts.path}?{urlencode(kept)}")
        assert response.status_code == 403 and response.json()["type"] == INVALID


def test_a_link_expires_after_link_ttl_s(app: FastAPI, api: TestClient, small: BuiltSeries,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    link = _result(api, "alice", small)["result"]["slices"][1]["mask_url"]
    expires = int(parse_qs(urlsplit(link).query)["expires"][0])
    monkeypatch.setattr(signed_links, "now", lambda: expires - 1)
    assert api.get(link).status_code == 200
    monkeypatch.setattr(signed_links, "now", lambda: expires)
    response = api.get(link)
    assert response.status_code == 403 and response.json()["type"] == INVALID
    assert "expired" in response.json()["detail"]
    # The key still opens the path; a fresh read gives links good from the new now.
    assert api.get(urlsplit(link).path, headers=as_caller("alice")).status_code == 200


def test_link_ttl_s_sets_the_expiry(tmp_path: Path, small: BuiltSeries,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(tmp_path / "d", link_ttl_s=60)
    monkeypatch.setattr(signed_links, "now", lambda: 1_800_000_000.5)
    with CheckedClient(app, scopes=None) as api:
        link = _result(api, "alice", small)["result"]["slices"][0]["overlay_url"]
    assert parse_qs(urlsplit(link).query)["expires"] == ["1800000060"]


def test_a_link_of_a_deleted_study_is_404(api: TestClient, small: BuiltSeries) -> None:
    job = _result(api, "alice", small)
    link = job["result"]["slices"][1]["mask_url"]
    assert api.delete(f"/v1/studies/{job['id']}", headers=as_caller("alice")).status_code == 204
    response = api.get(link)
    assert response.status_code == 404
    assert response.json()["type"] == "urn:bonemets:problem:job-not-found"


def test_an_admins_link_names_the_owner_and_opens_only_that_study(
    api: TestClient, small: BuiltSeries
) -> None:
    alices = _result(api, "alice", small)["id"]
    bobs = _result(api, "bob", small)["id"]
    read = api.get(f"/v1/studies/{alices}", headers=as_caller("root")).json()
    link = read["result"]["slices"][1]["mask_url"]
    assert parse_qs(urlsplit(link).query)["client"] == ["alice"]
    assert api.get(link).status_code == 200
    # The same signature on bob's study is a different path: refused.
    assert api.get(link.replace(alices, bobs)).status_code == 403


def test_rotated_keys_verify_while_listed(tmp_path: Path, small: BuiltSeries) -> None:
    data = tmp_path / "data"
    with CheckedClient(_app(data, link_keys=OLD_KEY), scopes=None) as api:
        job = _result(api, "alice", small)
        old_link = job["result"]["slices"][1]["mask_url"]
    path = urlsplit(old_link).path
    with CheckedClient(_app(data, link_keys=f"{NEW_KEY},{OLD_KEY}"), scopes=None) as api:
        assert api.get(old_link).status_code == 200
        new_link = api.get(f"/v1/studies/{job['id']}", headers=as_caller("alice")).json()[
            "result"]["slices"][1]["mask_url"]
        expires = int(parse_qs(urlsplit(new_link).query)["expires"][0])
        signed_new = LinkSigner([NEW_KEY.encode()]).query(path, "alice", expires)
        assert parse_qs(urlsplit(new_link).query)["signature"] == [signed_new["signature"]]
    with CheckedClient(_app(data, link_keys=NEW_KEY), scopes=None) as api:
        assert api.get(new_link).status_code == 200
        refused = api.get(old_link)
        assert refused.status_code == 403 and refused.json()["type"] == INVALID


def test_without_configured_keys_one_is_made_once_for_the_service_alone(
    tmp_path: Path, small: BuiltSeries
) -> None:
    data = tmp_path / "data"
    with CheckedClient(_app(data), scopes=None) as api:
        link = _result(api, "alice", small)["result"]["slices"][1]["mask_url"]
    key_file = data / "link.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes().strip()
    assert len(key) >= 32
    query = parse_qs(urlsplit(link).query)
    expires = int(query["expires"][0])
    expected = LinkSigner([key]).query(urlsplit(link).path, "alice", expires)
    assert query["signature"] == [expected["signature"]]
    # A restart keeps the key: old links still open.
    with CheckedClient(_app(data), scopes=None) as api:
        assert api.get(link).status_code == 200
    assert key_file.read_bytes().strip() == key


def test_links_are_absolute_under_the_public_url(tmp_path: Path, small: BuiltSeries) -> None:
    base = "https://pacs.example.org/bonemets/"
    with CheckedClient(_app(tmp_path / "d", public_url=base), scopes=None) as api:
        job = _result(api, "alice", small)
        link = job["result"]["slices"][1]["overlay_url"]
        assert link.startswith(f"https://pacs.example.org/bonemets/v1/studies/{job['id']}/")
        # Behind the proxy that strips /bonemets, the app sees the path it signed.
        behind_proxy = link.removeprefix("https://pacs.example.org/bonemets")
        assert api.get(behind_proxy).status_code == 200


def test_a_link_does_not_open_the_job_document(api: TestClient, small: BuiltSeries) -> None:
    job = _result(api, "alice", small)
    query = urlsplit(job["result"]["slices"][1]["mask_url"]).query
    # The study's document needs credentials: a link names the one path it was signed for.
    response = TestClient.request(api, "GET", f"/v1/studies/{job['id']}?{query}")
    assert response.status_code == 403 and response.json()["type"] == INVALID
    assert TestClient.request(api, "GET", f"/v1/studies/{job['id']}").status_code == 401


def test_a_link_verifies_under_a_root_path(tmp_path: Path, small: BuiltSeries) -> None:
    """Served with ``--root-path /bonemets``: the signature covers the path the app routes."""
    app = _app(tmp_path / "d", public_url="https://pacs.example.org/bonemets")
    with CheckedClient(app, scopes=None) as api:
        link = _result(api, "alice", small)["result"]["slices"][1]["mask_url"]
    with TestClient(app, root_path="/bonemets") as prefixed:
        response = prefixed.get(link.removeprefix("https://pacs.example.org"))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"

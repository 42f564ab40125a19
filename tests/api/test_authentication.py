"""Tests that try to get in: every route walked anonymously, API keys wrong, revoked, short of
a scope, in the wrong header; open paths; routes and mounts added later; BONEMETS_AUTH=off."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient
from starlette.routing import Mount

from api.auth.keys import KeyStore
from api.auth.principal import Principal
from api.commands.access import key_store
from api.config import Settings
from api.errors import InvalidLink
from api.http.app import create_app
from api.http.auth import flat_routes, is_open, original
from tests.api.callers import probed_app
from tests.api.contract import CheckedClient, example_path, new_key
from tests.api.fakes import BrightBoneModel


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", decode_workers=1)


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[CheckedClient]:
    with CheckedClient(probed_app(settings), scopes=None, raise_server_exceptions=False) as client:
        yield client


def assert_unauthenticated(response: Any) -> None:
    assert response.status_code == 401, (response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "urn:bonemets:problem:unauthenticated"


def walk(app: FastAPI) -> Iterator[tuple[str, str, str]]:
    """(path template, method, URL) for every route and mount the app registers."""
    for entry in flat_routes(app.routes):
        if isinstance(original(entry), Mount):
            yield entry.path, "GET", entry.path + "/favicon.png"
            continue
        for method in sorted(entry.methods or {"GET"}):
            yield entry.path, method, example_path(entry.path)


def test_every_route_off_the_open_list_refuses_an_anonymous_request(
    anonymous: CheckedClient, settings: Settings
) -> None:
    app: FastAPI = anonymous.app  # type: ignore[assignment]
    protected, opened = set(), set()
    for path, method, url in walk(app):
        response = anonymous.request(method, url)
        if is_open(path, settings.auth_open_paths):
            assert response.status_code < 400, (method, url, response.status_code)
            opened.add(path)
        else:
            assert_unauthenticated(response)
            protected.add(path)
    # The walk saw every operation the API publishes, and the open pages.
    assert set(app.openapi()["paths"]) - {"/healthz", "/readyz"} <= protected
    assert {"/v1/studies", "/v1/studies/{job_id}", "/v1/models", "/v1/whoami"} <= protected
    assert {"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/docs/assets"} <= opened


def test_routes_and_mounts_added_later_are_protected_too(
    settings: Settings, tmp_path: Path
) -> None:
    app = create_app(settings, model_factory=lambda _: BrightBoneModel())

    @app.get("/v1/forgotten")  # declares no dependency at all
    async def forgotten() -> dict[str, str]:
        return {"secret": "yes"}

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("patient data")
    app.mount("/files", StaticFiles(directory=tmp_path / "files"))
    with TestClient(app) as client:  # a static folder is outside the published contract
        assert_unauthenticated(client.get("/v1/forgotten"))
        assert_unauthenticated(client.get("/files/a.txt"))
        headers = {"Authorization": f"Bearer {new_key(client, 'c', [])}"}
        assert client.get("/v1/forgotten", headers=headers).json() == {"secret": "yes"}
        assert client.get("/files/a.txt", headers=headers).text == "patient data"


def test_the_open_list_is_a_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", auth_open_paths="/healthz")
    with CheckedClient(probed_app(settings), scopes=None) as client:
        assert client.get("/healthz").status_code == 200
        for path in ("/readyz", "/openapi.json", "/docs", "/docs/assets/favicon.png"):
            assert_unauthenticated(client.get(path))


@pytest.mark.parametrize("authorization", [
    "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "bm_0123", "Token bm_x",
    "Bearer bm_0123456789ab_short", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig",
])
def test_malformed_or_unknown_credentials_are_401(
    anonymous: CheckedClient, authorization: str
) -> None:
    with anonymous.sending(authorization):
        assert_unauthenticated(anonymous.get("/v1/whoami"))


def test_no_credentials_is_401(anonymous: CheckedClient) -> None:
    assert_unauthenticated(anonymous.get("/v1/whoami"))
    assert_unauthenticated(anonymous.post("/v1/studies"))


def test_a_wrong_key_is_401_and_never_logged(
    anonymous: CheckedClient, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key(anonymous, "pacs", ["studies:read"])
    key_id = key.split("_")[1]
    wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    unknown_id = "bm_ffffffffffff_" + key.split("_", 2)[2]
    with caplog.at_level(logging.DEBUG):
        for wrong in (wrong_secret, unknown_id):
            with anonymous.sending(f"Bearer {wrong}"):
                assert_unauthenticated(anonymous.get("/v1/whoami"))
    assert key_id in caplog.text  # the key id is what the log names
    secret = key.split("_", 2)[2]
    assert secret not in caplog.text and wrong_secret not in caplog.text


def test_a_good_key_names_its_client_in_either_header(anonymous: CheckedClient) -> None:
    key = new_key(anonymous, "pacs-router", ["studies:read", "studies:write"])
    expected = {"client": "pacs-router", "method": "api-key",
                "scopes": ["studies:read", "studies:write"]}
    with anonymous.sending(f"Bearer {key}"):
        assert anonymous.get("/v1/whoami").json() == expected
    with anonymous.sending(f"bearer  {key} "):  # the scheme is case-insensitive (RFC 7235)
        assert anonymous.get("/v1/whoami").json() == expected
    assert anonymous.get("/v1/whoami", headers={"X-API-Key": key}).json() == expected
    assert_unauthenticated(anonymous.get("/v1/whoami", headers={"X-API-Key": key + "x"}))


def test_a_revoked_key_is_401(anonymous: CheckedClient) -> None:
    keys: KeyStore = anonymous.app_state["services"].keys
    record, key = keys.create("pacs", ["studies:read"])
    with anonymous.sending(f"Bearer {key}"):
        assert anonymous.get("/v1/needs-read").status_code == 200
        assert keys.revoke(record.id)
        assert_unauthenticated(anonymous.get("/v1/needs-read"))


def test_a_key_revoked_by_another_process_is_401_at_once(
    anonymous: CheckedClient, settings: Settings
) -> None:
    key = new_key(anonymous, "pacs", ["studies:read"])
    with anonymous.sending(f"Bearer {key}"):
        assert anonymous.get("/v1/needs-read").status_code == 200
        other = key_store(settings)  # `bonemets keys revoke`, on the gateway's store
        other.revoke(key.split("_")[1])
        other.close()
        assert_unauthenticated(anonymous.get("/v1/needs-read"))


def test_a_key_without_the_scope_is_403(anonymous: CheckedClient) -> None:
    key = new_key(anonymous, "writer", ["studies:write"])
    with anonymous.sending(f"Bearer {key}"):
        response = anonymous.get("/v1/needs-read")
        assert response.status_code == 403
        assert response.json()["type"] == "urn:bonemets:problem:forbidden"
        assert "www-authenticate" not in response.headers
    admin = new_key(anonymous, "ops", ["admin"])
    with anonymous.sending(f"Bearer {admin}"):
        assert anonymous.get("/v1/needs-read").status_code == 200


def test_with_auth_off_anyone_is_the_local_operator(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", auth="off")
    with CheckedClient(probed_app(settings), scopes=None) as client:
        answer = client.get("/v1/whoami").json()
        assert answer["client"] == "local" and "admin" in answer["scopes"]
        assert client.get("/v1/needs-read").status_code == 200
        assert client.get("/v1/models").status_code == 200
        spec = client.get("/openapi.json").json()
        assert "securitySchemes" not in spec.get("components", {})


def test_the_document_names_the_schemes_and_protects_all_but_the_open_operations(
    anonymous: CheckedClient, settings: Settings
) -> None:
    spec = anonymous.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "in": "header", "name": "X-API-Key"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if is_open(path, settings.auth_open_paths):
                assert "security" not in operation and "401" not in operation["responses"]
                continue
            assert operation["security"] == [{"bearer": []}, {"apiKey": []}], (path, method)
            assert "401" in operation["responses"]
    assert "403" in spec["paths"]["/v1/needs-read"]["get"]["responses"]
    assert "403" not in spec["paths"]["/v1/whoami"]["get"]["responses"]


class FakeLinks:
    """A signed-link checker: ``?sig=good`` grants a reader, ``?sig=`` anything else is bad."""

    def verify_link(self, path: str, query: Mapping[str, str]) -> Principal | None:
        if "sig" not in query:
            return None
        if query["sig"] != "good":
            raise InvalidLink("the link's signature does not match")
        return Principal("viewer-of-" + path.rsplit("/", 1)[-1], frozenset({"studies:read"}),
                         method="signed-link")


def test_a_request_without_headers_may_carry_a_signed_link(settings: Settings) -> None:
    with TestClient(probed_app(settings)) as client:
        client.app_state["services"].links = FakeLinks()
        answer = client.get("/v1/whoami", params={"sig": "good"})
        assert answer.json() == {"client": "viewer-of-whoami", "scopes": ["studies:read"],
                                 "method": "signed-link"}
        # A link is no key: a route asking for a scope refuses it (only the mask and overlay
        # routes take a link's caller).
        refused = client.get("/v1/needs-read", params={"sig": "good"})
        assert refused.status_code == 403 and "signed link" in refused.json()["detail"]
        assert client.get("/v1/needs-read", params={"sig": "forged"}).status_code == 403
        assert_unauthenticated(client.get("/v1/needs-read"))
        key = new_key(client, "pacs", [])  # a header wins over the link: here, no scope
        forbidden = client.get("/v1/needs-read", params={"sig": "good"},
                               headers={"Authorization": f"Bearer {key}"})
        assert forbidden.status_code == 403

"""OIDC access tokens against a real identity provider: a local HTTP server the test starts,
serving a discovery document and a JWKS of keys made here (tests/api/identity_provider.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from api.auth.principal import Scope
from api.config import Settings
from tests.api.callers import probed_app
from tests.api.contract import CheckedClient
from tests.api.identity_provider import (
    AUDIENCE,
    IdentityProvider,
    SigningKey,
    hs256_token,
    unsigned_token,
)

RSA_KEY = SigningKey.rsa("rsa-1")
EC_KEY = SigningKey.ec("ec-1")
ROTATED_KEY = SigningKey.rsa("rsa-2")
STRANGER_KEY = SigningKey.rsa("rsa-1")  # the provider's kid, another key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider()
    idp.keys = [RSA_KEY, EC_KEY]
    yield idp
    idp.close()


def oidc_settings(tmp_path: Path, issuer: str, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", decode_workers=1, oidc_issuer=issuer,
                    oidc_audience=AUDIENCE, **extra)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(tmp_path: Path, provider: IdentityProvider, clock: FakeClock
           ) -> Iterator[CheckedClient]:
    app = probed_app(oidc_settings(tmp_path, provider.issuer))
    with CheckedClient(app, scopes=None) as test_client:
        test_client.app_state["services"].oidc.jwks.clock = clock
        yield test_client


def who(client: CheckedClient, token: str, path: str = "/v1/whoami") -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "urn:bonemets:problem:unauthenticated"


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["RS256", "ES256"])
def test_a_good_token_names_its_client_and_known_scopes(
    client: CheckedClient, provider: IdentityProvider, key: SigningKey
) -> None:
    response = who(client, provider.token(key))
    assert response.status_code == 200, response.text
    assert response.json() == {"client": "pacs-router", "method": "oidc",
                               "scopes": ["studies:read", "studies:write"]}  # not "openid"


def test_claims_named_in_the_settings_give_client_and_scopes(
    tmp_path: Path, provider: IdentityProvider
) -> None:
    settings = oidc_settings(tmp_path, provider.issuer, oidc_client_claim="appid",
                             oidc_scopes_claim="scp")
    with CheckedClient(probed_app(settings), scopes=None) as client:
        token = provider.token(EC_KEY, appid="ris-7", scope=None, scp=["studies:delete", "x"])
        assert who(client, token).json()["client"] == "ris-7"
        assert who(client, token, "/v1/needs-delete").json() == {"client": "ris-7"}
        # Without the configured claim (nor azp/client_id): the subject.
        fallback = provider.token(EC_KEY, azp=None, scp=["studies:read"])
        assert who(client, fallback).json() == {
            "client": "svc-1", "method": "oidc", "scopes": ["studies:read"]}


def test_a_token_without_the_scope_is_forbidden(
    client: CheckedClient, provider: IdentityProvider
) -> None:
    response = who(client, provider.token(RSA_KEY, scope="studies:read"), "/v1/needs-delete")
    assert response.status_code == 403
    assert response.json()["type"] == "urn:bonemets:problem:forbidden"
    admin = provider.token(RSA_KEY, scope=Scope.ADMIN.value)
    assert who(client, admin, "/v1/needs-delete").status_code == 200


REFUSED = {
    "expired": lambda idp: idp.token(RSA_KEY, exp=idp.claims()["iat"] - 120),
    "not yet valid": lambda idp: idp.token(RSA_KEY, nbf=idp.claims()["iat"] + 600),
    "wrong audience": lambda idp: idp.token(RSA_KEY, aud="another-app"),
    "wrong issuer": lambda idp: idp.token(EC_KEY, iss="https://evil.example"),
    "no expiry": lambda idp: idp.token(RSA_KEY, exp=None),
    "no audience": lambda idp: idp.token(RSA_KEY, aud=None),
    "signed by another key": lambda idp: idp.token(STRANGER_KEY),
    "alg none": lambda idp: unsigned_token(idp.claims(), RSA_KEY.kid),
    "HS256 with the public key": lambda idp: hs256_token(idp.claims(), RSA_KEY.kid,
                                                         RSA_KEY.public_pem()),
    "RS256 header on the EC key": lambda idp: idp.token(RSA_KEY, kid=EC_KEY.kid),
    "no kid": lambda idp: jwt.encode(idp.claims(), RSA_KEY.private, algorithm="RS256"),
    "not a JWT": lambda idp: "not-a-token",
    "tampered payload": lambda idp: _tampered(idp.token(RSA_KEY)),
}


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    return ".".join((header, flipped, signature))


@pytest.mark.parametrize("make", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_token_is_refused_with_401(
    client: CheckedClient, provider: IdentityProvider, make: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = make(provider)
    with caplog.at_level(logging.DEBUG):
        assert_refused(who(client, token))
    assert token not in caplog.text
    assert who(client, provider.token(RSA_KEY)).status_code == 200  # the good one still works


def test_an_unknown_kid_refreshes_the_keys_once_per_interval(
    client: CheckedClient, provider: IdentityProvider, clock: FakeClock
) -> None:
    assert who(client, provider.token(RSA_KEY)).status_code == 200
    assert provider.jwks_fetches == 1
    stranger = SigningKey.rsa("made-up")
    assert_refused(who(client, provider.token(stranger)))
    assert provider.jwks_fetches == 1  # the keys were fetched just now: no second request
    clock.now += 11
    assert_refused(who(client, provider.token(stranger)))
    assert provider.jwks_fetches == 2  # refreshed once: maybe the provider rotated
    for _ in range(5):  # a flood of made-up kids costs the provider nothing more
        assert_refused(who(client, provider.token(stranger, kid=f"x{_}")))
    assert provider.jwks_fetches == 2
    clock.now += 11
    assert_refused(who(client, provider.token(stranger)))
    assert provider.jwks_fetches == 3
    assert provider.requests["/.well-known/openid-configuration"] == 1


def test_a_key_rotated_at_the_provider_is_picked_up(
    client: CheckedClient, provider: IdentityProvider, clock: FakeClock
) -> None:
    assert who(client, provider.token(RSA_KEY)).status_code == 200
    provider.keys = [ROTATED_KEY, EC_KEY]  # rsa-1 withdrawn, rsa-2 new
    clock.now += 11
    assert who(client, provider.token(ROTATED_KEY)).status_code == 200
    assert provider.jwks_fetches == 2
    assert_refused(who(client, provider.token(RSA_KEY)))  # the withdrawn key no longer works


def test_keys_older_than_their_max_age_are_fetched_again(
    client: CheckedClient, provider: IdentityProvider, clock: FakeClock
) -> None:
    assert who(client, provider.token(RSA_KEY)).status_code == 200
    provider.keys = [EC_KEY]
    clock.now += 3601
    assert_refused(who(client, provider.token(RSA_KEY)))
    assert provider.jwks_fetches == 2


def test_an_unreachable_provider_is_a_401_not_a_500(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the gateway asks it
    idp_issuer = f"http://127.0.0.1:{port}"
    with CheckedClient(probed_app(oidc_settings(tmp_path, idp_issuer)), scopes=None) as client:
        token = jwt.encode({"iss": idp_issuer, "aud": AUDIENCE, "exp": 2**31, "azp": "x"},
                           RSA_KEY.private, algorithm="RS256", headers={"kid": RSA_KEY.kid})
        assert_refused(who(client, token))


def test_api_keys_still_work_beside_the_provider(client: CheckedClient) -> None:
    _, key = client.app_state["services"].keys.create("pacs", ["studies:read"])
    response = who(client, key)
    assert response.json() == {"client": "pacs", "method": "api-key", "scopes": ["studies:read"]}


def test_an_issuer_without_an_audience_does_not_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", oidc_issuer="https://idp.example")
    with pytest.raises(ValueError, match="AUDIENCE"):
        with CheckedClient(probed_app(settings), scopes=None):
            pass

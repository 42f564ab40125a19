"""What an OIDC token's claims make of the caller, and which JWKS keys may verify a token."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from api.auth.jwks import JwksUnavailable, signing_keys
from api.auth.oidc import client_of, scopes_of


def test_scopes_come_from_a_string_or_a_list_and_only_known_ones_count() -> None:
    assert scopes_of({"scope": "openid studies:read  admin"}, "scope") == {"studies:read", "admin"}
    assert scopes_of({"scp": ["studies:write", 7, "email"]}, "scp") == {"studies:write"}
    assert scopes_of({"scope": "studies:read"}, "scp") == frozenset()
    assert scopes_of({"scope": {"studies:read": True}}, "scope") == frozenset()


def test_the_client_claim_falls_back_to_client_id_then_sub() -> None:
    claims = {"azp": "ris", "client_id": "cid", "sub": "subject"}
    assert client_of(claims, "azp") == "ris"
    assert client_of({"client_id": "cid", "sub": "subject"}, "azp") == "cid"
    assert client_of({"sub": "subject"}, "azp") == "subject"
    assert client_of({"appid": "a1", "sub": "s"}, "appid") == "a1"
    assert client_of({"aud": "x"}, "azp") is None
    assert client_of({"azp": "has space"}, "azp") is None  # not a usable owner name
    assert client_of({"azp": "", "sub": "s"}, "azp") == "s"


def _jwk(public: object, algorithm: type, **extra: str) -> dict[str, object]:
    return {**algorithm.to_jwk(public, as_dict=True), **extra}  # type: ignore[attr-defined]


def test_only_rs256_and_es256_signing_keys_with_a_kid_are_kept() -> None:
    rsa_public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    jwks = {"keys": [
        _jwk(rsa_public, RSAAlgorithm, kid="rsa"),
        _jwk(p256, ECAlgorithm, kid="ec"),
        _jwk(p384, ECAlgorithm, kid="es384"),  # ES384: not accepted here
        _jwk(rsa_public, RSAAlgorithm, kid="enc", use="enc"),
        _jwk(rsa_public, RSAAlgorithm, kid="ps", alg="PS256"),
        _jwk(rsa_public, RSAAlgorithm),  # no kid
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},  # a shared secret
        {"kty": "nonsense", "kid": "x"},
        "not a key",
    ]}
    keys = signing_keys(jwks)
    assert set(keys) == {"rsa", "ec"}
    assert keys["rsa"].algorithm_name == "RS256" and keys["ec"].algorithm_name == "ES256"


def test_a_key_set_without_a_keys_list_is_unavailable() -> None:
    with pytest.raises(JwksUnavailable):
        signing_keys({"keys": {"kid": "x"}})

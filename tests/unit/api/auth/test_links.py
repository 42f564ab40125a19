"""Signed links: HMAC over path, client and expiry; keys that rotate; the generated key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.auth.links import LinkClaim, LinkSigner, link_keys
from api.config import Settings
from api.errors import InvalidLink

PATH = "/v1/studies/0123456789abcdef0123456789abcdef/slices/4/mask.png"
KEY_A, KEY_B = b"a" * 32, b"b" * 32


def _claim(signer: LinkSigner, path: str = PATH, client: str = "alice",
           expires: int = 2_000) -> LinkClaim:
    query = signer.query(path, client, expires)
    return LinkClaim(path, query["client"], int(query["expires"]), query["signature"])


def test_a_signed_link_verifies_until_it_expires() -> None:
    signer = LinkSigner([KEY_A])
    claim = _claim(signer)
    signer.verify(claim, now=1_999.9)
    with pytest.raises(InvalidLink, match="expired"):
        signer.verify(claim, now=2_000)


@pytest.mark.parametrize("field", ["path", "client", "expires", "signature"])
def test_any_changed_part_is_refused(field: str) -> None:
    signer = LinkSigner([KEY_A])
    claim = _claim(signer)
    changed = {
        "path": PATH.replace("/4/", "/5/"), "client": "alicE",
        "expires": claim.expires + 1, "signature": claim.signature[:-1] + "x",
    }
    forged = LinkClaim(**{**claim.__dict__, field: changed[field]})
    with pytest.raises(InvalidLink, match="signature"):
        signer.verify(forged, now=0)


def test_the_signature_is_url_safe_hmac_sha256() -> None:
    signature = LinkSigner([KEY_A]).query(PATH, "alice", 2_000)["signature"]
    assert len(signature) == 43  # 32 bytes, base64url without padding
    assert set(signature) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_fields_cannot_slide_into_each_other() -> None:
    signer = LinkSigner([KEY_A])
    one = signer.query("/a", "b\n1", 2)["signature"]
    other = signer.query("/a\nb", "1", 2)["signature"]
    assert one != other


def test_the_first_key_signs_and_every_listed_key_verifies() -> None:
    old, rotated, new_only = LinkSigner([KEY_A]), LinkSigner([KEY_B, KEY_A]), LinkSigner([KEY_B])
    by_old, by_new = _claim(old), _claim(rotated)
    rotated.verify(by_old, now=0)
    new_only.verify(by_new, now=0)
    with pytest.raises(InvalidLink):
        new_only.verify(by_old, now=0)
    with pytest.raises(InvalidLink):
        old.verify(by_new, now=0)


def test_configured_keys_are_split_trimmed_and_must_be_long(tmp_path: Path) -> None:
    assert link_keys(f" {'k' * 32} , {'j' * 40},", tmp_path) == [b"k" * 32, b"j" * 40]
    with pytest.raises(ValueError, match=r"\[1\]"):
        link_keys(f"{'k' * 32},short", tmp_path)
    assert not (tmp_path / "link.key").exists()


def test_without_configured_keys_one_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    (first,) = link_keys(None, tmp_path / "data")
    key_file = tmp_path / "data" / "link.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert link_keys("", tmp_path / "data") == [first]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["link.key"]


def test_settings_refuse_a_short_link_key_at_start() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(link_keys=f"{'k' * 32},short")
    assert Settings(link_keys=f"{'k' * 32}, {'j' * 32}").link_keys


def test_a_generated_key_file_emptied_by_hand_is_refused_not_used(tmp_path: Path) -> None:
    (tmp_path / "link.key").write_text("\n")
    with pytest.raises(ValueError, match="no usable link key"):
        link_keys(None, tmp_path)

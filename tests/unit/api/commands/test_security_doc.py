"""docs/security.md names every access-control setting as it is spelled (a renamed setting
would leave the page describing one that no longer exists)."""

from __future__ import annotations

import re
from pathlib import Path

from api.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[4]
ACCESS_SETTINGS = (
    "auth", "auth_open_paths", "oidc_issuer", "oidc_audience", "oidc_client_claim",
    "oidc_scopes_claim", "link_keys", "link_ttl_s", "audit_log", "client_max_inflight",
    "client_uploads_per_minute", "max_image_pixels", "ssl_certfile", "ssl_keyfile",
    "public_url",
)


def test_security_doc_names_the_settings_that_exist() -> None:
    text = (REPO_ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    named = {name.lower() for name in re.findall(r"BONEMETS_([A-Z0-9_]+)", text)}
    assert named - set(Settings.model_fields) == set()
    assert set(ACCESS_SETTINGS) - named == set()
    assert set(ACCESS_SETTINGS) <= set(Settings.model_fields)

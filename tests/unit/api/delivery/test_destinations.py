"""The destinations file: what it accepts, what it refuses (with a message a user can act on),
and which destinations a client's studies go to."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import main
from api.delivery.destinations import (
    CStoreDestination,
    FhirDestination,
    StowDestination,
    load_destinations,
)

BOTH = """
[[destination]]
name = "pacs-web"
kind = "stow-rs"
url = "https://pacs.example.org/dicom-web"
username = "bonemets"
password_env = "TEST_PACS_PASSWORD"

[[destination]]
name = "pacs-dimse"
kind = "c-store"
ae_title = "ORTHANC"
host = "pacs.example.org"
port = 4242
clients = ["ris", "dimse-CT1"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "destinations.toml"
    path.write_text(text)
    return path


def test_both_kinds_load_and_route_by_client(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PACS_PASSWORD", "s3cret")
    loaded = load_destinations(write(tmp_path, BOTH))
    web, dimse = loaded.by_name["pacs-web"], loaded.by_name["pacs-dimse"]
    assert isinstance(web, StowDestination) and isinstance(dimse, CStoreDestination)
    assert web.secret(web.password_env) == "s3cret"
    assert (dimse.ae_title, dimse.host, dimse.port) == ("ORTHANC", "pacs.example.org", 4242)
    assert loaded.for_client("ris") == ["pacs-web", "pacs-dimse"]
    assert loaded.for_client("someone-else") == ["pacs-web"]
    assert loaded.for_client(None) == ["pacs-web"]  # a study from before owners


def test_no_file_means_no_destination() -> None:
    assert load_destinations(None).for_client("anyone") == []


@pytest.mark.parametrize(("text", "message"), [
    ("[[destination]]\nname = 'x'\nkind = 'ftp'\n", "destination.0"),
    ("[[destination]]\nname = 'x'\nkind = 'c-store'\nhost = 'h'\nport = 70000\n"
     "ae_title = 'A'\n", "port"),
    ("[[destination]]\nname = 'x'\nkind = 'c-store'\nhost = 'h'\nport = 104\n"
     "ae_title = 'MUCH_TOO_LONG_AE_TITLE'\n", "ae_title"),
    ("[[destination]]\nname = 'x'\nkind = 'stow-rs'\nurl = 'ftp://pacs'\n", "url"),
    ("[[destination]]\nname = 'x'\nkind = 'stow-rs'\nurl = 'http://p'\nusername = 'u'\n",
     "username and password_env go together"),
    ("[[destination]]\nname = 'x'\nkind = 'stow-rs'\nurl = 'http://p'\npasword_env = 'P'\n",
     "pasword_env"),
    ("[[destination]]\nname = 'x'\nkind = 'stow-rs'\nurl = 'http://p'\ntoken_env = 'NOPE_'\n",
     "environment variable NOPE_ is not set"),
    ("[[destination]]\nname = 'x'\nkind = 'stow-rs'\nurl = 'http://p'\n"
     "[[destination]]\nname = 'x'\nkind = 'stow-rs'\nurl = 'http://q'\n", "unique"),
    ("[[destination]\n", "not TOML"),
])
def test_a_wrong_file_is_refused_saying_what_is_wrong(tmp_path: Path, text: str,
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_destinations(write(tmp_path, text))


def test_serve_stops_on_a_wrong_file_in_one_line_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[[destination]]\nname = 'x'\nkind = 'ftp'\n")
    code = main(["serve", "--data-dir", str(tmp_path / "data"), "--destinations", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("bonemets serve: error:") and str(path) in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_a_fhir_server_is_a_destination_whose_secret_must_be_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("[[destination]]\nname = 'ehr'\nkind = 'fhir'\nurl = 'https://fhir.example.org/r4'\n"
            "token_env = 'TEST_EHR_TOKEN'\ntimeout_s = 7\nclients = ['ris']\n")
    monkeypatch.delenv("TEST_EHR_TOKEN", raising=False)
    with pytest.raises(ValueError, match="TEST_EHR_TOKEN is not set"):
        load_destinations(write(tmp_path, text))
    monkeypatch.setenv("TEST_EHR_TOKEN", "t")
    loaded = load_destinations(write(tmp_path, text))
    ehr = loaded.by_name["ehr"]
    assert isinstance(ehr, FhirDestination)
    assert (ehr.url, ehr.timeout_s, ehr.secret(ehr.token_env)) == (
        "https://fhir.example.org/r4", 7.0, "t")
    assert loaded.for_client("ris") == ["ehr"] and loaded.for_client("other") == []

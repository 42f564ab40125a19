"""``bonemets serve --dicom-port/--ae-title``: the listener's settings, off by default."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.commands import serve
from api.config import Settings
from api.dimse.listener import decodable_transfer_syntaxes, owner_of


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("BONEMETS_DICOM_PORT", "BONEMETS_AE_TITLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_the_listener_is_off_by_default_and_the_options_turn_it_on() -> None:
    assert serve.settings_from(_parse([])).dicom_port is None
    settings = serve.settings_from(_parse(["--dicom-port", "11112", "--ae-title", "BM1"]))
    assert (settings.dicom_port, settings.ae_title) == (11112, "BM1")


@pytest.mark.parametrize("title", ["", " " * 4, "A" * 17, "back\\slash"])
def test_an_ae_title_dicom_does_not_allow_is_refused(title: str) -> None:
    with pytest.raises(ValidationError):
        Settings(ae_title=title)


def test_the_owner_names_the_calling_ae_as_a_client_name() -> None:
    settings = Settings(dicom_client="pacs.{calling_ae}", dicom_calling_aes=" PACS1, ROUTER ")
    assert owner_of(settings, "CT ROOM/2") == "pacs.CT_ROOM_2"
    assert settings.dicom_calling_ae_titles == {"PACS1", "ROUTER"}
    with pytest.raises(ValidationError):
        Settings(dicom_client="dimse:{calling_ae}")  # not a name an API key can hold


def test_the_listener_accepts_the_transfer_syntaxes_the_reader_decodes() -> None:
    syntaxes = set(decodable_transfer_syntaxes())
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57",
            "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5"} <= syntaxes

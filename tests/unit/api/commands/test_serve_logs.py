"""``bonemets serve --log-format``: text lines unless the option or the variable says JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.commands import serve
from tests.unit.api.commands.test_serve_dicom import _parse


def test_the_log_format_is_text_unless_the_option_or_the_variable_says_json(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.delenv("BONEMETS_LOG_FORMAT", raising=False)
    assert serve.settings_from(_parse([])).log_format == "text"
    assert serve.settings_from(_parse(["--log-format", "json"])).log_format == "json"
    monkeypatch.setenv("BONEMETS_LOG_FORMAT", "json")
    assert serve.settings_from(_parse([])).log_format == "json"
    assert serve.settings_from(_parse(["--log-format", "text"])).log_format == "text"


def test_another_format_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["--log-format", "xml"])
    assert "invalid choice" in capsys.readouterr().err

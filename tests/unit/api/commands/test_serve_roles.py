"""``bonemets serve --role``: one process by default; an API replica or a worker when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.commands import serve
from tests.unit.api.commands.test_serve_dicom import _parse


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BONEMETS_ROLE", raising=False)
    monkeypatch.chdir(tmp_path)


def test_one_process_by_default_and_the_option_or_the_variable_names_the_role(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert serve.settings_from(_parse([])).role == "all"
    assert serve.settings_from(_parse(["--role", "worker"])).role == "worker"
    monkeypatch.setenv("BONEMETS_ROLE", "api")
    assert serve.settings_from(_parse([])).role == "api"
    assert serve.settings_from(_parse(["--role", "all"])).role == "all"  # the option wins


def test_an_unknown_role_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_code:
        _parse(["--role", "both"])
    assert exit_code.value.code == 2
    assert "invalid choice: 'both'" in capsys.readouterr().err

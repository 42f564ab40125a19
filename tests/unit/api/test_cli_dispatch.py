"""The ``bonemets`` dispatcher: commands are the ``bonemets.commands`` entry points."""

from __future__ import annotations

import ast
import logging
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import api.cli
from api.cli import COMMAND_GROUP, HELP_ORDER, build_parser, installed_commands

REPO_ROOT = Path(__file__).resolve().parents[3]


def _declared_commands() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(project["project"]["entry-points"][COMMAND_GROUP])


def test_installed_commands_are_the_declared_ones_in_order() -> None:
    names = [name for name, _ in installed_commands()]
    assert sorted(names) == sorted(_declared_commands()), (
        "the installed entry points differ from pyproject.toml: reinstall (pip install -e .)"
    )
    assert names == list(HELP_ORDER)


def test_help_lists_every_command_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    listed = capsys.readouterr().out.split("COMMAND", 2)[2]
    positions = []
    for name in HELP_ORDER:
        # A long name's help starts on the next line.
        found = [at for end in " \n" if (at := listed.find(f"    {name}{end}")) >= 0]
        assert found, f"{name} is not listed"
        positions.append(min(found))
    assert positions == sorted(positions)


def test_a_command_that_cannot_import_is_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    declared = [
        EntryPoint("triton", "api.commands.triton:add_parser", COMMAND_GROUP),
        EntryPoint("train", "bonemets_no_such_module.cli:add_parser", COMMAND_GROUP),
        EntryPoint("serve", "api.commands.serve:add_parser", COMMAND_GROUP),
    ]
    monkeypatch.setattr(api.cli, "entry_points", lambda group: declared)
    with caplog.at_level(logging.DEBUG, logger="api.cli"):
        commands = installed_commands()
    assert [name for name, _ in commands] == ["serve", "triton"]
    assert any("'train' left out" in record.getMessage() for record in caplog.records)
    parser = build_parser()
    assert parser.parse_args(["serve"]).command == "serve"
    with pytest.raises(SystemExit):
        parser.parse_args(["train"])


def test_api_imports_nothing_from_export() -> None:
    offenders = []
    for path in sorted((REPO_ROOT / "api").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in names
                          if name == "export" or name.startswith("export.")]
    assert offenders == []

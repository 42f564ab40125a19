"""``bonemets keys create|list|revoke``, through the ``bonemets`` dispatcher."""

from __future__ import annotations

import re
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import api.cli
from api.auth.keys import KEY_PATTERN, open_key_store
from api.cli import COMMAND_GROUP


@pytest.fixture(autouse=True)
def _keys_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The installed entry points may predate `keys` (an editable install made before it).
    declared = [EntryPoint("keys", "api.commands.keys:add_parser", COMMAND_GROUP)]
    monkeypatch.setattr(api.cli, "entry_points", lambda group: declared)
    monkeypatch.delenv("BONEMETS_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's; the default data dir is ./data


def _keys(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = api.cli.main(["keys", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _create(capsys: pytest.CaptureFixture[str], data: Path, *argv: str) -> str:
    code, out, err = _keys(capsys, "create", "--data-dir", str(data), *argv)
    assert code == 0, err
    return out


def test_create_prints_only_the_key_and_stores_only_its_hash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = _create(capsys, tmp_path / "data", "--client", "pacs-router")
    key = out.strip()
    assert out == key + "\n" and KEY_PATTERN.fullmatch(key)
    store = open_key_store(tmp_path / "data")
    principal = store.verify(key)
    assert principal is not None and principal.client == "pacs-router"
    assert principal.scopes == {"studies:write", "studies:read", "studies:delete"}
    secret = key.rsplit("_", 1)[1]
    for stored in (tmp_path / "data").iterdir():
        assert secret.encode() not in stored.read_bytes()


def test_create_with_scopes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    admin = _create(capsys, tmp_path, "--client", "ops", "--scopes", "admin").strip()
    reader = _create(capsys, tmp_path, "--client", "viewer",
                     "--scopes", "studies:read,studies:write").strip()
    store = open_key_store(tmp_path)
    admin_principal, reader_principal = store.verify(admin), store.verify(reader)
    assert admin_principal is not None and admin_principal.is_admin
    assert reader_principal is not None
    assert reader_principal.scopes == {"studies:read", "studies:write"}


def test_the_default_data_dir_is_the_settings_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, _ = _keys(capsys, "create", "--client", "a")
    assert code == 0 and (tmp_path / "data" / "keys.sqlite").is_file()
    monkeypatch.setenv("BONEMETS_DATA_DIR", str(tmp_path / "srv"))
    code, _, _ = _keys(capsys, "create", "--client", "b")
    assert code == 0 and (tmp_path / "srv" / "keys.sqlite").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["--client", "pacs", "--scopes", "studies:everything"], "unknown scopes"),
    (["--client", "two words"], "a client name is"),
    (["--client", ""], "a client name is"),
])
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = _keys(capsys, "create", "--data-dir", str(tmp_path), *argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("bonemets keys: error:") and message in err
    if "scopes" in message:  # refused before the store is touched
        assert not (tmp_path / "keys.sqlite").exists()


def test_list_shows_keys_never_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = _create(capsys, tmp_path, "--client", "pacs").strip()
    second = _create(capsys, tmp_path, "--client", "ops", "--scopes", "admin").strip()
    first_id = KEY_PATTERN.fullmatch(first).group(1)  # type: ignore[union-attr]
    assert _keys(capsys, "revoke", "--data-dir", str(tmp_path), first_id)[0] == 0
    code, out, _ = _keys(capsys, "list", "--data-dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "CLIENT", "SCOPES", "CREATED", "REVOKED"]
    rows = [line.split() for line in lines[1:]]
    timestamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    assert [row[:3] for row in rows] == [
        [first_id, "pacs", "studies:delete,studies:read,studies:write"],
        [KEY_PATTERN.fullmatch(second).group(1), "ops", "admin"],  # type: ignore[union-attr]
    ]
    assert timestamp.match(rows[0][4]) and rows[1][4] == "-"
    assert all(timestamp.match(row[3]) for row in rows)
    for key in (first, second):
        assert key.rsplit("_", 1)[1] not in out


def test_revoke_refuses_the_key_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = _create(capsys, tmp_path, "--client", "pacs").strip()
    key_id = KEY_PATTERN.fullmatch(key).group(1)  # type: ignore[union-attr]
    store = open_key_store(tmp_path)  # as the running gateway holds it
    assert store.verify(key) is not None
    code, out, err = _keys(capsys, "revoke", "--data-dir", str(tmp_path), key_id)
    assert (code, out) == (0, "") and f"key {key_id} of client 'pacs' revoked" in err
    assert store.verify(key) is None
    code, _, err = _keys(capsys, "revoke", "--data-dir", str(tmp_path), key_id)
    assert code == 0 and "already revoked" in err


def test_revoke_an_unknown_id_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _create(capsys, tmp_path, "--client", "pacs")
    code, _, err = _keys(capsys, "revoke", "--data-dir", str(tmp_path), "000000000000")
    assert code == 2 and "no key with id '000000000000'" in err and err.count("\n") == 1


@pytest.mark.parametrize("action", [["list"], ["revoke", "000000000000"]])
def test_a_missing_store_is_not_an_empty_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, action: list[str]
) -> None:
    code, _, err = _keys(capsys, *action, "--data-dir", str(tmp_path / "typo"))
    assert code == 2 and "no key store at" in err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("action", [[], ["create"], ["list"], ["revoke"]])
def test_every_action_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        api.cli.main(["keys", *action, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "bonemets keys " in text

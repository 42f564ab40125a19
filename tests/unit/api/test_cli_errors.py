"""A user's mistake (bad config, argument, path or file): one line and exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "said"),
    [('{"steps": -5', "Expecting"), ('{"stepz": 5}', "stepz")],
    ids=["broken-json", "unknown-key"],
)
def test_a_bad_train_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(text, encoding="utf-8")
    code, err = _run(["train", "--config", str(config), "--out", str(tmp_path / "x.pt")], capsys)
    assert code == 2
    assert err.startswith("bonemets train: error: ") and said in err and "Traceback" not in err


def test_a_file_that_is_no_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    fake = tmp_path / "notes.pt"
    fake.write_text("not a checkpoint", encoding="utf-8")
    code, err = _run(["export", "onnx", str(fake), "--repository", str(tmp_path / "r")], capsys)
    assert code == 2
    assert f"{fake} is not a bonemets checkpoint" in err and "weights_only" not in err


def test_phantom_with_no_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["phantom", "--out", str(tmp_path / "p"), "--slices", "0"], capsys)
    assert code == 2 and "slices must be >= 1" in err


def test_verbose_keeps_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slices must be >= 1"):
        main(["-v", "phantom", "--out", str(tmp_path / "p"), "--slices", "0"])

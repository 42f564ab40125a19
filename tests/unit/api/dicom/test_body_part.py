"""Series of a body part the model was never trained on are refused, by BodyPartExamined."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.config import Settings
from api.dicom.headers import body_part_code
from api.dicom.series import select_ct_series
from api.errors import UnsupportedBodyPart
from tests.conftest import corpus_series_files

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.mark.parametrize(
    ("value", "code"),
    [("HEAD", "HEAD"), (" head ", "HEAD"), ("Head Neck", "HEADNECK"), ("WHOLE_BODY", "WHOLEBODY"),
     ("T-SPINE", "TSPINE"), ("", "")],
)
def test_body_part_codes_ignore_case_spaces_and_separators(value: str, code: str) -> None:
    assert body_part_code(value) == code


def test_settings_refuse_the_head_by_default_and_none_when_empty() -> None:
    default = Settings().refused_body_part_codes
    assert {"HEAD", "BRAIN", "SKULL", "HEADNECK"} <= default
    # The trunk, the spine and blank values are read.
    assert not {"CHEST", "ABDOMEN", "PELVIS", "TSPINE", "LSPINE", "WHOLEBODY", ""} & default
    assert Settings(refused_body_parts="").refused_body_part_codes == frozenset()
    assert Settings(refused_body_parts="head, Head Neck,").refused_body_part_codes == {
        "HEAD", "HEADNECK"
    }


def test_a_head_ct_is_refused_with_its_body_part(ct_corpus: Path) -> None:
    with pytest.raises(UnsupportedBodyPart, match="BodyPartExamined is HEAD"):
        select_ct_series(
            corpus_series_files(ct_corpus, "S02_"), refused_body_parts=frozenset({"HEAD"})
        )


def test_without_a_refused_list_a_head_ct_is_read(ct_corpus: Path) -> None:
    paths = corpus_series_files(ct_corpus, "S02_")
    assert len(select_ct_series(paths).slices) == len(paths)


def test_a_series_without_body_part_is_read(ct_corpus: Path) -> None:
    # S04 carries no BodyPartExamined: an optional attribute must not decide alone.
    paths = corpus_series_files(ct_corpus, "S04_")
    series = select_ct_series(paths, refused_body_parts=Settings().refused_body_part_codes)
    assert len(series.slices) == len(paths)


def test_a_refused_series_beside_a_trunk_series_is_left_out_with_a_warning(
    ct_corpus: Path,
) -> None:
    head, trunk = corpus_series_files(ct_corpus, "S03_"), corpus_series_files(ct_corpus, "S01b_")
    series = select_ct_series(
        [*head, *trunk], refused_body_parts=Settings().refused_body_part_codes
    )
    assert len(series.slices) == len(trunk)
    assert [r.error for r in series.rejected] == [UnsupportedBodyPart]
    assert any("BodyPartExamined is BRAIN" in w for w in series.warnings)

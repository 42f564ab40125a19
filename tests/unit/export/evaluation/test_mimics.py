"""False findings at normal variants: the tally's rule, and an evaluation of a mimic phantom."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from api.dicom.geometry import resize_to_model
from api.inference.contract import INPUT_SIZE
from export.evaluation.data import open_studies, parse_data_source
from export.evaluation.metrics import SliceComponents, SliceMetricsAccumulator
from export.evaluation.mimics import MARGIN_PX, Mimic, MimicTally, mimics_markdown
from export.evaluation.report import write_report
from export.evaluation.run import evaluate
from tests.unit.export.evaluation.test_evaluate import FakeModel, _key, _model_plane

# Seed 5, lumbar, 24 slices of 192 px: channels in L3 and L4 and a haemangioma in L3.
SPEC = {"slices": 24, "size": 192, "pixel_spacing_mm": 1.0, "slice_thickness_mm": 2.0,
        "slice_spacing_mm": 2.0, "n_lesions": 3, "region": "lumbar", "encoding": "none",
        "bone_variants": True}


def _components(predicted: npt.NDArray[np.bool_],
                truth: npt.NDArray[np.bool_]) -> SliceComponents:
    counter = SliceMetricsAccumulator()
    return counter.update_slice(predicted, (predicted * 200).astype(np.uint8), truth)


def test_a_false_component_counts_at_a_variant_within_the_margin() -> None:
    mimic = Mimic(key=0, kind="bone_island", rows=(40, 45), cols=(40, 45))
    truth = np.zeros((96, 96), bool)
    truth[10:14, 10:14] = True  # a lesion, found: never counted here
    near = truth.copy()
    near[45 + MARGIN_PX: 50 + MARGIN_PX, 40:43] = True  # its first row is the grown box's last
    far = truth.copy()
    far[45 + MARGIN_PX + 1: 50 + MARGIN_PX, 40:43] = True  # one row further
    tally = MimicTally()
    tally.add_slice("a", [mimic], _components(near, truth))
    tally.add_slice("a", [mimic], _components(far, truth))
    tally.add_slice("a", [], _components(truth, truth))  # nothing false, no variant
    result = tally.result()
    assert result is not None
    assert result["kinds"] == {"bone_island": {"variants": 1, "reported": 1,
                                               "share_reported": 1.0, "false_components": 1}}
    assert result["false_components"] == 2
    assert result["false_components_elsewhere"] == 1
    text = mimics_markdown(result)
    assert "| bone island | 1 | 1 (100%) | 1 |" in text
    assert MimicTally().result() is None  # no variant seen: no section at all


@pytest.fixture(scope="module")
def mimic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from export.phantoms import make_phantom, sample_spec, write_study

    root = tmp_path_factory.mktemp("mimics")
    write_study(make_phantom(sample_spec(5, **SPEC)), root / "study_0001")
    return root


def test_an_evaluation_counts_the_variants_a_model_reports(mimic_folder: Path,
                                                           tmp_path: Path) -> None:
    truth = json.loads((mimic_folder / "study_0001" / "truth.json").read_text())
    variants = truth["normal_variants"]
    kinds = sorted(v["kind"] for v in variants)
    assert kinds == ["basivertebral_channel", "basivertebral_channel", "haemangioma"]
    haem = next(v for v in variants if v["kind"] == "haemangioma")
    (r0, r1), (c0, c1) = haem["bbox_px"]["row"], haem["bbox_px"]["col"]
    _, studies = open_studies(parse_data_source(str(mimic_folder)))
    (study,) = list(studies)
    # A model that finds every lesion and marks the haemangioma on each of its slices, plus a
    # blob in the air on slice 0.
    batch = study.read(0, study.slice_count)
    on_haem = {i for i, mimics in study.mimics.items() if any(m.kind == "haemangioma"
                                                                for m in mimics)}
    assert len(on_haem) == len(haem["slices"])
    answers = {}
    for index, (hounsfield, reference) in enumerate(zip(batch.hounsfield, batch.truth,
                                                        strict=True)):
        mask = reference.copy()
        if index in on_haem:
            mask[r0:r1 + 1, c0:c1 + 1] = True
        if index == 0:
            mask[2:6, 2:6] = True
        fitted, mapping = resize_to_model(hounsfield, INPUT_SIZE)
        answers[_key(fitted)] = _model_plane(mask, mapping)
    evaluation = evaluate(FakeModel(answers), [study])
    result = evaluation.normal_variants
    assert result is not None
    assert result["kinds"]["haemangioma"] == {
        "variants": 1, "reported": 1, "share_reported": 1.0,
        "false_components": len(haem["slices"])}
    assert result["kinds"]["basivertebral_channel"]["reported"] == 0
    assert result["kinds"]["basivertebral_channel"]["variants"] == 2
    assert result["false_components_elsewhere"] == 1
    paths = write_report(evaluation, tmp_path)
    saved = json.loads(paths[0].read_text())
    assert saved["normal_variants"] == result
    assert "## False findings at normal variants" in paths[1].read_text()


def test_a_malformed_variant_entry_is_a_clear_error(tmp_path: Path) -> None:
    from export.evaluation.mimics import read_mimics

    (tmp_path / "truth.json").write_text(json.dumps(
        {"slices": [{"index": 0, "sop_instance_uid": "1.2"}],
         "normal_variants": [{"kind": "bone_island", "slices": [0]}]}))  # no bbox_px
    with pytest.raises(ValueError, match="normal variant 0 has no usable"):
        read_mimics(tmp_path, ["1.2"])
    assert read_mimics(tmp_path / "elsewhere", ["1.2"]) == {}

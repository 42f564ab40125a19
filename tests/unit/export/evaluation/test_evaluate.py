"""``bonemets evaluate``: model kinds, study sources, SEG mapping, counting and report files."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from api.config import DEFAULT_FLOOR_MM
from api.dicom.geometry import ResizeMapping, resize_to_model
from api.inference.contract import BONE_WINDOW, INPUT_SIZE, ONNX_INPUT, ONNX_OUTPUT
from api.inference.protocol import ModelInfo, Segmentation
from export.evaluation.data import (
    Study,
    open_studies,
    parse_data_source,
    study_folders,
    volume_study,
)
from export.evaluation.metrics import MatchRule, SliceMetricsAccumulator
from export.evaluation.models import ModelKind, open_model, parse_model_source
from export.evaluation.report import write_report
from export.evaluation.run import evaluate, probability_to_original

MaskMaker = Callable[[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]]


# ---------------------------------------------------------------- fakes at the model seam


def _model_plane(truth: npt.NDArray[np.bool_], mapping: ResizeMapping) -> npt.NDArray[np.bool_]:
    """A model-space mask that ``mapping.mask_to_original`` turns back into ``truth`` exactly."""
    rows, columns = mapping.to_model(
        np.arange(truth.shape[0], dtype=np.float64), np.arange(truth.shape[1], dtype=np.float64)
    )
    r = np.clip(np.rint(rows).astype(np.intp), 0, mapping.size - 1)
    c = np.clip(np.rint(columns).astype(np.intp), 0, mapping.size - 1)
    plane = np.zeros((mapping.size, mapping.size), dtype=np.bool_)
    plane[np.ix_(r, c)] = truth
    return plane


def _key(hounsfield: npt.NDArray[np.int16]) -> str:
    return hashlib.sha1(np.ascontiguousarray(hounsfield).tobytes()).hexdigest()


class FakeModel:
    """Answers each 512x512 slice it has been shown with a prepared mask (a SegmentationModel)."""

    def __init__(self, answers: dict[str, npt.NDArray[np.bool_]], threshold: float = 0.5) -> None:
        self.answers = answers
        self.calls: list[int] = []
        self.closed = False
        self._info = ModelInfo("fake", "1", INPUT_SIZE, (BONE_WINDOW,), threshold, 4, "fake")

    @classmethod
    def from_studies(cls, studies: Iterable[Study], answer: MaskMaker) -> FakeModel:
        """``answer(truth in model space)`` for every slice of ``studies``."""
        answers = {}
        for study in studies:
            batch = study.read(0, study.slice_count)
            for hounsfield, truth in zip(batch.hounsfield, batch.truth, strict=True):
                fitted, mapping = resize_to_model(hounsfield, INPUT_SIZE)
                answers[_key(fitted)] = answer(_model_plane(truth, mapping))
        return cls(answers)

    async def segment(self, hounsfield: npt.NDArray[np.int16]) -> Segmentation:
        assert hounsfield.dtype == np.int16 and hounsfield.shape[1:] == (INPUT_SIZE, INPUT_SIZE)
        self.calls.append(len(hounsfield))
        mask = np.stack([self.answers[_key(plane)] for plane in hounsfield])
        blocks = mask.reshape(len(mask), INPUT_SIZE // 4, 4, INPUT_SIZE // 4, 4).any(axis=(2, 4))
        return Segmentation(mask=mask, probability=(blocks * np.uint8(230)).astype(np.uint8))

    async def info(self) -> ModelInfo:
        return self._info

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True


def oracle(truth: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return truth.copy()


def empty(truth: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    return np.zeros_like(truth)


def with_false_blob(truth: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The truth plus one 8x8 blob at the same corner of every slice (air in all test data)."""
    mask = truth.copy()
    mask[100:108, 100:108] = True
    return mask


# ---------------------------------------------------------------- synthetic volumes


def _disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, columns = np.ogrid[: shape[0], : shape[1]]
    return np.asarray((rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 <= radius**2)


def synthetic_volume(
    shape: tuple[int, int, int], seed: int
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """A noisy body disc with two lesions: one over slices 0-2, one on the last slice only."""
    depth, rows, columns = shape
    rng = np.random.default_rng(seed)
    body = _disc((rows, columns), (rows / 2, columns / 2), min(rows, columns) * 0.35)
    hounsfield = np.where(body, 40, -1000) + rng.integers(-20, 20, size=shape)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[: min(3, depth)] |= _disc((rows, columns), (rows * 0.45, columns * 0.5), 5).astype(
        np.uint8
    )
    labels[depth - 1] |= 2 * _disc((rows, columns), (rows * 0.6, columns * 0.4), 3).astype(
        np.uint8
    )
    return hounsfield.astype(np.int16), labels


def synthetic_studies() -> list[Study]:
    """A 512x512 study (identity fit), a non-square 96x128 one (rescaled), and a negative one."""
    studies = []
    for index, shape in enumerate(((4, 512, 512), (5, 96, 128))):
        hounsfield, labels = synthetic_volume(shape, seed=index)
        studies.append(volume_study(f"s{index}", hounsfield, labels))
    hounsfield, _ = synthetic_volume((3, 64, 64), seed=7)
    studies.append(volume_study("negative", hounsfield, None))
    return studies


def _truth_counts(studies: Iterable[Study]) -> SliceMetricsAccumulator:
    """Counts of an exact prediction, fed straight to the accumulator (no model, no resize)."""
    counter = SliceMetricsAccumulator()
    for study in studies:
        batch = study.read(0, study.slice_count)
        for truth in batch.truth:
            counter.update(truth, (truth * 230).astype(np.uint8), truth)
        counter.end_study(study.name)
    return counter


# ---------------------------------------------------------------- counting


def test_oracle_model_is_perfect_at_each_slice_size() -> None:
    studies = synthetic_studies()
    model = FakeModel.from_studies(studies, oracle)
    result = evaluate(model, studies, batch=3)
    metrics = result.metrics
    # 3 + 1 components in s0 (4 slices) and s1 (5 slices); none in the negative study.
    assert metrics["per_slice"]["truth"] == 8 and metrics["per_slice"]["detected"] == 8
    assert metrics["per_slice"]["sensitivity"] == 1.0 and metrics["per_slice"]["ppv"] == 1.0
    assert metrics["lesion"]["truth"] == 4 and metrics["lesion"]["sensitivity"] == 1.0
    assert metrics["lesion"]["ppv"] == 1.0 and metrics["lesion"]["false_positives_per_scan"] == 0
    assert metrics["dice"]["pooled"] == 1.0 and metrics["dice"]["mean_per_study"] == 1.0
    assert metrics["studies"] == 3 and metrics["slices"] == 12
    # Batches of at most 3 slices: 4 -> 3+1, 5 -> 3+2, 3 -> 3.
    assert model.calls == [3, 1, 3, 2, 3] and model.closed
    assert metrics == _truth_counts(studies).result()


def test_empty_model_finds_nothing_and_has_no_ppv() -> None:
    studies = synthetic_studies()
    metrics = evaluate(FakeModel.from_studies(studies, empty), studies).metrics
    for level in ("per_slice", "lesion"):
        assert metrics[level]["sensitivity"] == 0.0
        assert metrics[level]["ppv"] is None
        assert metrics[level]["predicted"] == 0
        assert metrics[level]["false_positives_per_scan"] == 0.0
    assert metrics["dice"]["pooled"] == 0.0
    assert [row["dice"] for row in metrics["dice"]["per_study"]] == [0.0, 0.0, None]


def test_one_false_blob_per_slice() -> None:
    studies = synthetic_studies()
    evaluation = evaluate(FakeModel.from_studies(studies, with_false_blob), studies)
    metrics = evaluation.metrics
    # 12 slices over 3 scans: 12 false 2D components, one false 3D lesion per scan.
    assert metrics["per_slice"]["false_predicted"] == 12
    assert metrics["per_slice"]["false_positives_per_scan"] == 4.0
    assert metrics["per_slice"]["sensitivity"] == 1.0
    assert metrics["per_slice"]["ppv"] == pytest.approx(8 / 20)
    assert metrics["lesion"]["false_positives_per_scan"] == 1.0
    assert metrics["lesion"]["ppv"] == pytest.approx(4 / 7)
    rows = {row["study"]: row for row in evaluation.per_study}
    assert rows["negative"] == {
        "study": "negative", "labelled": False, "slices": 3,
        "truth_lesions": 0, "detected_lesions": 0, "predicted_lesions": 1,
        "false_positive_lesions": 1, "truth_components": 0, "detected_components": 0,
        "predicted_components": 3, "false_positive_components": 3, "dice": 0.0,
    }
    assert rows["s1"]["truth_lesions"] == 2 and rows["s1"]["detected_lesions"] == 2
    assert rows["s1"]["false_positive_components"] == 5
    predicted = sum(r["predicted_components"] for r in rows.values())
    assert predicted == metrics["per_slice"]["predicted"]


def test_iou_rule_rejects_a_detection_too_large() -> None:
    studies = synthetic_studies()[:1]

    def swollen(truth: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        from scipy import ndimage

        return np.asarray(ndimage.binary_dilation(truth, iterations=6))

    loose = evaluate(FakeModel.from_studies(studies, swollen), studies).metrics
    strict = evaluate(
        FakeModel.from_studies(studies, swollen), studies, rule=MatchRule.iou(0.5)
    ).metrics
    assert loose["per_slice"]["sensitivity"] == 1.0
    assert strict["per_slice"]["sensitivity"] == 0.0 and strict["rule"] == "IoU >= 0.5"


def test_probability_maps_back_with_the_mask_rule() -> None:
    mapping = ResizeMapping.fit((96, 128), INPUT_SIZE)
    probability = np.arange(128 * 128, dtype=np.int64).reshape(128, 128) % 251
    probability = probability.astype(np.uint8)
    back = probability_to_original(probability, mapping)
    assert back.shape == (96, 128)
    full = np.repeat(np.repeat(probability, 4, axis=0), 4, axis=1)
    for value in (0, 17, 250):
        expected = mapping.mask_to_original(full == value)
        assert np.array_equal(back == value, expected)


# ---------------------------------------------------------------- phantom studies on disk

PHANTOM_SHAPE = {"slices": 6, "size": 128, "n_lesions": 4}


def _seeds_with_lesions(count: int) -> list[int]:
    """The first seeds whose small phantom shows a lesion on every slice."""
    from export.phantoms import make_phantom, sample_spec

    found = []
    for seed in range(1, 200):
        labels = make_phantom(sample_spec(seed, **PHANTOM_SHAPE)).labels
        if all(plane.any() for plane in labels):
            found.append(seed)
            if len(found) == count:
                return found
    raise AssertionError("no phantom seed below 200 puts lesions on all six slices")


@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny phantom studies as ``bonemets phantom`` writes them (DICOM + SEG + truth)."""
    from export.phantoms import make_phantom, sample_spec, write_study

    root = tmp_path_factory.mktemp("phantoms")
    for index, seed in enumerate(_seeds_with_lesions(2)):
        phantom = make_phantom(sample_spec(seed, **PHANTOM_SHAPE))
        write_study(phantom, root / f"phantom-{index}-seed-{seed}")
    return root


def _phantoms_on_disk(root: Path) -> list[Study]:
    total, studies = open_studies(parse_data_source(str(root)))
    assert total == 2
    return list(studies)


def test_phantom_folders_read_back_as_made(phantom_folder: Path) -> None:
    from export.evaluation.data import phantom_studies

    on_disk = _phantoms_on_disk(phantom_folder)
    seeds = [int(study.name.rsplit("-", 1)[1]) for study in on_disk]
    for disk, seed in zip(on_disk, seeds, strict=True):
        (memory,) = phantom_studies(range(seed, seed + 1), **PHANTOM_SHAPE)
        assert memory.name == f"phantom-{seed}"
        assert disk.labelled and memory.labelled and disk.slice_count == memory.slice_count == 6
        a, b = disk.read(0, 6), memory.read(0, 6)
        assert all(np.array_equal(x, y) for x, y in zip(a.hounsfield, b.hounsfield, strict=True))
        assert all(np.array_equal(x, y) for x, y in zip(a.truth, b.truth, strict=True))
        assert all(t.any() for t in a.truth) and a.truth[0].shape == (128, 128)


def test_phantoms_oracle_empty_and_blob_models(phantom_folder: Path) -> None:
    studies = _phantoms_on_disk(phantom_folder)
    perfect = evaluate(FakeModel.from_studies(studies, oracle), studies, batch=4).metrics
    truth_components = perfect["per_slice"]["truth"]
    assert truth_components >= 12  # every slice of both phantoms shows a lesion
    for level in ("per_slice", "lesion"):
        assert perfect[level]["sensitivity"] == perfect[level]["ppv"] == 1.0
    assert perfect["dice"]["pooled"] == perfect["dice"]["mean_per_study"] == 1.0
    nothing = evaluate(FakeModel.from_studies(studies, empty), studies).metrics
    assert nothing["per_slice"]["sensitivity"] == nothing["lesion"]["sensitivity"] == 0.0
    assert nothing["per_slice"]["ppv"] is None and nothing["lesion"]["ppv"] is None
    blob = evaluate(FakeModel.from_studies(studies, with_false_blob), studies).metrics
    # 6 slices a scan: 6 false 2D components and one false 3D lesion per scan.
    assert blob["per_slice"]["false_positives_per_scan"] == 6.0
    assert blob["lesion"]["false_positives_per_scan"] == 1.0
    assert blob["per_slice"]["sensitivity"] == 1.0
    assert blob["per_slice"]["ppv"] == pytest.approx(truth_components / (truth_components + 12))


def test_phantom_source_parses_seed_ranges() -> None:
    assert parse_data_source("phantoms:100000-100019").seeds == range(100000, 100020)
    assert parse_data_source("phantoms:7").seeds == range(7, 8)
    assert str(parse_data_source("phantoms:100000-100019")) == "phantoms:100000-100019"
    for bad in ("phantoms:9-3", "phantoms:a-b", "phantoms:"):
        with pytest.raises(ValueError):
            parse_data_source(bad)
    with pytest.raises(FileNotFoundError):
        parse_data_source("/nonexistent/studies")


# ---------------------------------------------------------------- model kinds


def _threshold_network(path: Path, cut: float = 0.5, gain: float = 40.0) -> Path:
    """A tiny ONNX network: logits = (image - cut) * gain, i.e. 'windowed value above cut'."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Sub", [ONNX_INPUT, "cut"], ["shifted"]),
            helper.make_node("Mul", ["shifted", "gain"], [ONNX_OUTPUT]),
        ],
        "threshold",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["n", 1, "h", "w"])],
        [
            helper.make_tensor("cut", TensorProto.FLOAT, [], [cut]),
            helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _repository(root: Path, threshold: float = 0.5) -> Path:
    """A minimal Triton repository: bonemets/config.pbtxt with parameters, 1/model.onnx."""
    model_dir = root / "bonemets"
    _threshold_network(model_dir / "1" / "model.onnx")
    parameters = {"windows": "400:1800", "threshold": str(threshold), "model_version": "t1"}
    lines = ['name: "bonemets"', 'backend: "python"', "max_batch_size: 8"]
    lines += [
        f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}'
        for k, v in parameters.items()
    ]
    (model_dir / "config.pbtxt").write_text("\n".join(lines) + "\n")
    return root


def test_model_kinds_are_recognised(tmp_path: Path) -> None:
    repository = _repository(tmp_path / "repo")
    cases = {
        "checkpoints/demo.pt": ModelKind.CHECKPOINT,
        str(repository): ModelKind.ONNX,
        str(repository / "bonemets"): ModelKind.ONNX,
        str(repository / "bonemets" / "1" / "model.onnx"): ModelKind.ONNX,
        "grpc://127.0.0.1:8001/bonemets": ModelKind.TRITON,
    }
    for spec, kind in cases.items():
        assert parse_model_source(spec).kind is kind, spec
    triton = parse_model_source("grpc://triton.local:9001/bonemets_trt")
    assert (triton.address, triton.model_name) == ("triton.local:9001", "bonemets_trt")
    assert str(triton) == "grpc://triton.local:9001/bonemets_trt"
    assert parse_model_source("grpc://127.0.0.1:8001").model_name == "bonemets"
    for bad in ("http://127.0.0.1:8000/bonemets", "grpc://nohost/bonemets", "weights.bin"):
        with pytest.raises(ValueError):
            parse_model_source(bad)


def test_triton_model_opens_without_connecting() -> None:
    from api.inference.triton import TritonSegmenter

    model = open_model(parse_model_source("grpc://127.0.0.1:1/bonemets_onnx_gpu"), timeout_s=5)
    assert isinstance(model, TritonSegmenter)
    assert (model.url, model.model_name, model.timeout_s) == ("127.0.0.1:1", "bonemets_onnx_gpu", 5)


def _slices_around(cut_hu: float) -> npt.NDArray[np.int16]:
    """Two 512x512 slices whose left half is just above ``cut_hu`` and right half below."""
    hounsfield = np.full((2, INPUT_SIZE, INPUT_SIZE), int(cut_hu) - 300, dtype=np.int16)
    hounsfield[:, :, : INPUT_SIZE // 2] = int(cut_hu) + 300
    hounsfield[1, :100] = -1000
    return hounsfield


def test_onnx_layouts_read_windows_and_threshold(tmp_path: Path) -> None:
    repository = _repository(tmp_path / "repo", threshold=0.25)
    answers = []
    for spec in (repository, repository / "bonemets", repository / "bonemets/1/model.onnx"):
        model = open_model(parse_model_source(str(spec)))
        info = asyncio.run(model.info())
        assert (info.threshold, info.windows, info.version) == (0.25, (BONE_WINDOW,), "t1")
        answers.append(asyncio.run(model.segment(_slices_around(BONE_WINDOW.level))))
    # Windowed value > 0.5 exactly where HU > level: the left half, but air rows of slice 1.
    expected = np.zeros((2, INPUT_SIZE, INPUT_SIZE), dtype=np.bool_)
    expected[:, :, : INPUT_SIZE // 2] = True
    expected[1, :100] = False
    for answer in answers:
        assert np.array_equal(answer.mask, expected)
    overridden = open_model(parse_model_source(str(repository)), threshold=0.9)
    assert asyncio.run(overridden.info()).threshold == 0.9


@pytest.mark.slow
def test_checkpoint_adapter_matches_onnx_path(tmp_path: Path) -> None:
    """The torch adapter windows and thresholds like the ONNX path, byte for byte."""
    import torch

    from export.model import ModelConfig, build_model
    from export.model.checkpoint import save_checkpoint
    from export.packaging.onnx_export import export_network_onnx

    torch.manual_seed(0)
    config = ModelConfig(depth=18, width=0.25)
    network = build_model(config).eval()
    path = save_checkpoint(
        tmp_path / "tiny.pt", network, config, windows=(BONE_WINDOW,), threshold=0.01, version="c1"
    )
    onnx_path = export_network_onnx(network, tmp_path / "net.onnx", in_channels=1)
    hounsfield = np.random.default_rng(3).integers(-1000, 1500, size=(2, 512, 512))
    hounsfield = hounsfield.astype(np.int16)
    source = parse_model_source(str(path))
    assert source.kind is ModelKind.CHECKPOINT
    torch_model = open_model(source)
    info = asyncio.run(torch_model.info())
    assert (info.threshold, info.version, info.windows) == (0.01, "c1", (BONE_WINDOW,))
    from_torch = asyncio.run(torch_model.segment(hounsfield))
    onnx_model = open_model(parse_model_source(str(onnx_path)), threshold=0.01)
    from_onnx = asyncio.run(onnx_model.segment(hounsfield))
    assert from_torch.mask.shape == (2, 512, 512) and from_torch.probability.shape == (2, 128, 128)
    assert from_torch.mask.dtype == np.bool_ and from_torch.probability.dtype == np.uint8
    # The runtimes may round a logit sitting at the threshold differently: a few pixels at
    # most, and the probability grid within one step.
    assert 1000 < from_torch.mask.sum() < from_torch.mask.size // 2  # a mask worth comparing
    assert np.count_nonzero(from_torch.mask != from_onnx.mask) <= 5
    assert np.abs(from_torch.probability.astype(int) - from_onnx.probability).max() <= 1


# ---------------------------------------------------------------- DICOM SEG


def _s04(ct_corpus: Path, tmp_path: Path, seg: str | None) -> Path:
    """S04's three slices (and a SEG) linked into one study folder; nothing copied."""
    study = tmp_path / "S04"
    study.mkdir()
    for path in sorted((ct_corpus / "series" / "S04_ge_lightspeed_abdomen_3slice").iterdir()):
        (study / path.name).symlink_to(path)
    if seg is not None:
        (study / "seg.dcm").symlink_to(ct_corpus / "labels" / seg)
    return study


def test_seg_frames_map_to_slices_by_sop_instance_uid(ct_corpus: Path, tmp_path: Path) -> None:
    import pydicom

    from api.dicom.series import select_ct_series

    study = _s04(ct_corpus, tmp_path, "S04_liver_SEG.dcm")
    seg = pydicom.dcmread(study / "seg.dcm")
    frames = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID: plane != 0
        for f, plane in zip(seg.PerFrameFunctionalGroupsSequence, seg.pixel_array, strict=True)
    }
    assert study_folders(study) == [study]
    total, loaded = open_studies(parse_data_source(str(study)), segment_pattern="liver")
    (opened,) = list(loaded)
    assert total == 1 and opened.labelled and opened.slice_count == 3 and opened.name == "S04"
    batch = opened.read(0, 3)
    refs = select_ct_series(sorted(p for p in study.iterdir() if p.name != "seg.dcm")).slices
    for ref, truth in zip(refs, batch.truth, strict=True):
        assert np.array_equal(truth, frames[ref.sop_instance_uid])
    assert sum(int(t.sum()) for t in batch.truth) == sum(int(f.sum()) for f in frames.values())
    # The oracle through the whole path (SEG, resize of 512x512 is the identity) is perfect.
    metrics = evaluate(FakeModel.from_studies([opened], oracle), [opened]).metrics
    assert metrics["per_slice"]["truth"] >= 3 and metrics["lesion"]["truth"] >= 1
    assert metrics["per_slice"]["sensitivity"] == metrics["per_slice"]["ppv"] == 1.0
    assert metrics["dice"]["pooled"] == 1.0
    # The SEG's own segment name is no metastasis: by default nothing on it is a lesion.
    (default,) = list(open_studies(parse_data_source(str(study)))[1])
    assert default.labelled and not any(t.any() for t in default.read(0, 3).truth)


def test_seg_of_another_series_is_an_error(ct_corpus: Path, tmp_path: Path) -> None:
    study = tmp_path / "mismatch"
    study.mkdir()
    for path in sorted((ct_corpus / "series" / "S01b_DERIVED_S01_uids_restamped").iterdir()):
        (study / path.name).symlink_to(path)
    (study / "seg.dcm").symlink_to(ct_corpus / "labels" / "S04_liver_SEG.dcm")
    with pytest.raises(ValueError, match="references no slice"):
        list(open_studies(parse_data_source(str(study)), segment_pattern="liver")[1])


def test_folder_of_unlabelled_series(ct_corpus: Path, tmp_path: Path) -> None:
    _s04(ct_corpus, tmp_path, None)
    second = tmp_path / "S04_again" / "dicom"  # the layout bonemets phantom writes
    second.mkdir(parents=True)
    for path in sorted((tmp_path / "S04").iterdir()):
        (second / path.name).symlink_to(path.resolve())
    (tmp_path / "LICENSE").write_text("CC BY 4.0\n")  # not DICOM: the root is no study
    assert study_folders(tmp_path) == [tmp_path / "S04", tmp_path / "S04_again"]
    total, studies = open_studies(parse_data_source(str(tmp_path)))
    opened = list(studies)
    assert total == 2 and [s.name for s in opened] == ["S04", "S04_again"]
    assert not any(s.labelled for s in opened)
    evaluation = evaluate(FakeModel.from_studies(opened, with_false_blob), opened)
    assert evaluation.metrics["lesion"]["false_positives_per_scan"] == 1.0
    assert evaluation.metrics["per_slice"]["false_positives_per_scan"] == 3.0
    assert evaluation.metrics["per_slice"]["sensitivity"] is None
    assert [r["predicted_lesions"] for r in evaluation.per_study] == [1, 1]


# ---------------------------------------------------------------- report files


def test_report_files_match_the_accumulator(tmp_path: Path) -> None:
    from PIL import Image

    studies = synthetic_studies()
    evaluation = evaluate(FakeModel.from_studies(studies, with_false_blob), studies)
    evaluation.data = "synthetic"
    paths = write_report(evaluation, tmp_path / "out", per_study=True)
    assert [p.name for p in paths] == ["metrics.json", "metrics.md", "froc.png", "pr.png"]
    written = json.loads(paths[0].read_text())
    assert written["metrics"] == json.loads(json.dumps(_blob_counts(studies).result()))
    assert written["match_rule"] == "overlap >= 1 px" and written["data"] == "synthetic"
    assert [row["study"] for row in written["per_study"]] == ["s0", "s1", "negative"]
    markdown = paths[1].read_text()
    lines = set(markdown.splitlines())
    for expected in (
        "| sensitivity, per slice (2D components) | 1.000 | 8 of 8 reference components detected |",
        "| PPV, per slice (2D components) | 0.400 | 8 of 20 predicted components true |",
        "| false positives per scan, lesion-wise (3D) | 1.000 | 3 false lesions in 3 scans |",
        "| negative | no | 3 | 0 | 0 | 1 | 1 | 3 | 0.000 |",
    ):
        assert expected in lines
    for png in paths[2:]:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size == (600, 450)
            # Something was drawn besides the white background and black axes.
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is not None and len(colours) > 20


def _blob_counts(studies: Iterable[Study]) -> SliceMetricsAccumulator:
    """What the accumulator counts for with_false_blob, fed directly at the stored size."""
    counter = SliceMetricsAccumulator()
    for study in studies:
        batch = study.read(0, study.slice_count)
        for hounsfield, truth in zip(batch.hounsfield, batch.truth, strict=True):
            _, mapping = resize_to_model(hounsfield, INPUT_SIZE)
            plane = with_false_blob(_model_plane(truth, mapping))
            predicted = mapping.mask_to_original(plane)
            blocks = plane.reshape(128, 4, 128, 4).any(axis=(1, 3)) * np.uint8(230)
            full = np.repeat(np.repeat(blocks.astype(np.uint8), 4, 0), 4, 1)
            probability = np.where(mapping.mask_to_original(full > 0), np.uint8(230), np.uint8(0))
            counter.update(predicted, probability.astype(np.uint8), truth)
        counter.end_study(study.name)
    return counter


# ---------------------------------------------------------------- the command


def test_match_rule_and_threshold_options() -> None:
    import argparse

    from export.evaluation.cli import _match_rule
    from export.evaluation.models import check_threshold

    assert _match_rule("overlap:3") == MatchRule.overlap(3)
    assert _match_rule("overlap") == MatchRule.overlap(1)
    assert _match_rule("iou:0.1") == MatchRule.iou(0.1)
    for bad in ("iou:2", "overlap:1.5", "dice:0.5", "iou:x"):
        with pytest.raises(argparse.ArgumentTypeError):
            _match_rule(bad)
    served = FakeModel({}, threshold=0.5)
    assert asyncio.run(check_threshold(served, None)).threshold == 0.5
    assert asyncio.run(check_threshold(served, 0.5)).threshold == 0.5
    with pytest.raises(ValueError, match="cannot be asked for 0.3"):
        asyncio.run(check_threshold(served, 0.3))


def test_cli_writes_the_report(
    phantom_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli import main

    data = tmp_path / "data"
    data.mkdir()
    first, second = sorted(phantom_folder.iterdir())
    (data / "labelled").symlink_to(first)
    (data / "unlabelled").mkdir()  # the second phantom's series without its SEG: negative
    (data / "unlabelled" / "dicom").symlink_to(second / "dicom")
    network = _threshold_network(tmp_path / "net" / "model.onnx")
    out = tmp_path / "out"
    argv = [
        "evaluate", str(network), str(data), "--out", str(out), "--match", "iou:0.05",
        "--threshold", "0.5", "--windows", "400:1800", "--batch", "4", "--per-study",
    ]
    assert main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"]["source"] == str(network) and report["model"]["threshold"] == 0.5
    assert report["data"] == str(data) and report["match_rule"] == "IoU >= 0.05"
    assert [(r["study"], r["labelled"], r["slices"]) for r in report["per_study"]] == [
        ("labelled", True, 6), ("unlabelled", False, 6),
    ]
    assert report["per_study"][1]["truth_lesions"] == 0
    # The same counts as evaluating in process, study by study, under the gateway's default
    # reporting floor, which the command applies unless told otherwise.
    assert report["reporting_floor_mm"] == DEFAULT_FLOOR_MM
    _, studies = open_studies(parse_data_source(str(data)))
    model = open_model(parse_model_source(str(network)), threshold=0.5)
    direct = evaluate(model, studies, rule=MatchRule.iou(0.05), floor_mm=DEFAULT_FLOOR_MM)
    assert report["metrics"] == json.loads(json.dumps(direct.metrics))
    assert report["per_study"] == direct.per_study
    assert report["metrics"]["lesion"]["predicted"] > 0  # HU > 400 finds bone on every slice
    printed = capsys.readouterr().out
    assert "| metric | value | n |" in printed and "| unlabelled | no | 6 |" in printed
    assert (out / "metrics.md").read_text().startswith("# Evaluation")
    assert all((out / name).stat().st_size > 1000 for name in ("froc.png", "pr.png"))
    # The gallery by default: HU > 400 marks bone, all of it false on the unlabelled study.
    assert all((out / name).stat().st_size > 1000 for name in ("misses.png", "false-positives.png"))
    bare = tmp_path / "bare"
    assert main([*argv[:4], str(bare), *argv[5:], "--gallery", "0"]) == 0
    assert sorted(p.name for p in bare.iterdir()) == ["froc.png", "metrics.json", "metrics.md",
                                                      "pr.png"]
    # A served model's threshold cannot be changed: a clear error, exit status 2.
    served = ["evaluate", "grpc://127.0.0.1:1/bonemets", str(data), "--windows", "40:400"]
    assert main([*served, "--out", str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()

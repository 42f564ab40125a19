"""Pieces of a study's flow: the box conversion, the busy clock, job errors (resuming is in
test_job_runner.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from api.errors import PROBLEM_TYPE_PREFIX, BoneMetsError, NotDicom
from api.lesions.components import PixelBox
from api.schemas import Box2D, SliceBox
from api.study.pipeline import BusyClock
from api.study.results import half_open, inclusive
from api.study.runner import job_error

API = Path(__file__).resolve().parents[4] / "api"


def test_api_boxes_are_inclusive_and_convert_back_exactly() -> None:
    box = PixelBox(row0=200, col0=300, row1=210, col1=312)
    corners = inclusive(box)
    assert corners == {"row_min": 200, "col_min": 300, "row_max": 209, "col_max": 311}
    assert half_open(Box2D(**corners)) == box
    typed = SliceBox(**corners, lesion_id=1, pixels=120, probability_max=1.0)
    assert half_open(typed) == box


@pytest.mark.parametrize(("intervals", "busy"), [
    ([], 0.0),
    ([(0.0, 1.0)], 1.0),
    ([(0.0, 1.0), (0.5, 2.0)], 2.0),  # overlapping: counted once
    ([(3.0, 4.0), (0.0, 1.0)], 2.0),  # apart, added out of order
    ([(0.0, 5.0), (1.0, 2.0), (4.0, 6.0)], 6.0),  # one inside another
])
def test_busy_clock_counts_the_union_of_intervals(intervals: list[tuple[float, float]],
                                                  busy: float) -> None:
    clock = BusyClock()
    for began, ended in intervals:
        clock.add(began, ended)
    assert clock.busy_s() == pytest.approx(busy)


def test_an_unexpected_error_reports_as_internal_without_its_message() -> None:
    error = job_error(KeyError("/home/patient/secret"))
    assert (error.type, error.status) == (PROBLEM_TYPE_PREFIX + "internal", 500)
    assert "secret" not in error.detail and "KeyError" in error.detail
    known = job_error(NotDicom("a.pdf: no preamble"))
    assert (known.type, known.status, known.detail) == (
        "urn:bonemets:problem:not-dicom", 415, "a.pdf: no preamble")


def test_every_problem_type_is_written_in_the_error_tree_only() -> None:
    offenders = [str(path.relative_to(API)) for path in API.rglob("*.py")
                 if path.name != "errors.py" and PROBLEM_TYPE_PREFIX in path.read_text()]
    assert offenders == []
    types = {cls.type_uri for cls in _subclasses(BoneMetsError)} | {BoneMetsError.type_uri}
    assert all(uri.startswith(PROBLEM_TYPE_PREFIX) for uri in types)
    assert len(types) == len(_subclasses(BoneMetsError)) + 1  # one slug per class


def _subclasses(cls: type[BoneMetsError]) -> list[type[BoneMetsError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_the_error_tree_docstring_names_every_class() -> None:
    import api.errors

    doc = api.errors.__doc__ or ""
    for cls in _subclasses(BoneMetsError):
        assert f"── {cls.__name__} " in doc and f" {cls.slug}" in doc, cls.__name__


def test_the_study_flow_does_not_import_the_http_layer() -> None:
    for path in (API / "study").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [node.module or "" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom)]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names]
        assert not [m for m in imported if m.startswith(("api.http", "fastapi", "starlette"))], (
            path.name)

"""Synthetic CT phantoms of the trunk with bone metastases of known truth.

Public API (imported lazily, so ``bonemets --help`` stays fast)::

    PhantomSpec, sample_spec            what to make (scanner, anatomy knobs, lesion count)
    make_phantom -> Phantom             in memory: HU (Z, Y, X) int16, labels, lesion truth
    write_study(phantom, dir)           dicom/NNNN.dcm + seg.dcm + truth.json
    read_truth(dir) -> StudyTruth       the truth back, typed
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from export.phantoms.dicom_writer import write_study as write_study
    from export.phantoms.phantom import LesionTruth as LesionTruth
    from export.phantoms.phantom import Phantom as Phantom
    from export.phantoms.phantom import make_phantom as make_phantom
    from export.phantoms.spec import PhantomSpec as PhantomSpec
    from export.phantoms.spec import sample_spec as sample_spec
    from export.phantoms.truth import SliceTruth as SliceTruth
    from export.phantoms.truth import StudyTruth as StudyTruth
    from export.phantoms.truth import read_truth as read_truth

_EXPORTS = {
    "PhantomSpec": "spec", "sample_spec": "spec",
    "Phantom": "phantom", "LesionTruth": "phantom", "make_phantom": "phantom",
    "write_study": "dicom_writer",
    "StudyTruth": "truth", "SliceTruth": "truth", "read_truth": "truth",
}

__all__ = [
    "LesionTruth", "Phantom", "PhantomSpec", "SliceTruth", "StudyTruth", "make_phantom",
    "read_truth", "sample_spec", "write_study",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"export.phantoms.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'export.phantoms' has no attribute {name!r}")

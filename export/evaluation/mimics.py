"""False findings at normal variants: which mimics of a metastasis a model reports.

Phantoms made with ``bonemets phantom --bone-variants`` list in ``truth.json`` each normal
variant drawn into a vertebral body (a basivertebral channel, a bone island, a haemangioma,
a Schmorl's node, focal fatty marrow) with its slices and pixel box. None is labelled, so a
model that marks one makes a false finding. A false component (one that matches no reference
component on its slice) is **at** a variant when it overlaps the variant's box, grown by
``MARGIN_PX``, on a slice where the variant is drawn. Per kind: how many variants were in
the studies, how many of them drew at least one false component, and how many false
components they drew.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.evaluation.metrics import SliceComponents
from export.phantoms.truth import TRUTH_FILE

__all__ = ["MARGIN_PX", "Mimic", "MimicTally", "mimics_markdown", "read_mimics"]

MARGIN_PX = 2


@dataclass(frozen=True)
class Mimic:
    """One normal variant as the evaluation sees it: a kind and a pixel box (inclusive)."""

    key: int  # unique within its study
    kind: str
    rows: tuple[int, int]
    cols: tuple[int, int]


def read_mimics(folder: Path, sop_uids: list[str]) -> dict[int, list[Mimic]]:
    """The normal variants of a phantom study folder by slice index of ``sop_uids``.

    Empty when the folder has no ``truth.json`` or it lists none; ValueError when an entry
    is malformed (so ``bonemets evaluate`` stops with a message, not a traceback).
    """
    path = folder / TRUTH_FILE
    if not path.is_file():
        return {}
    truth = json.loads(path.read_text(encoding="utf-8"))
    variants = truth.get("normal_variants") or []
    if not variants:
        return {}
    position = {uid: i for i, uid in enumerate(sop_uids)}
    by_truth_index = {int(s["index"]): position.get(str(s["sop_instance_uid"]))
                      for s in truth.get("slices", [])}
    found: dict[int, list[Mimic]] = {}
    for key, item in enumerate(variants):
        try:
            (r0, r1), (c0, c1) = item["bbox_px"]["row"], item["bbox_px"]["col"]
            mimic = Mimic(key=key, kind=str(item["kind"]), rows=(int(r0), int(r1)),
                          cols=(int(c0), int(c1)))
            slices = [int(k) for k in item["slices"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: normal variant {key} has no usable kind, slices and "
                             f"bbox_px ({exc!r})") from None
        for k in slices:
            index = by_truth_index.get(k)
            if index is not None:
                found.setdefault(index, []).append(mimic)
    return found


class MimicTally:
    """Counts, over an evaluation, the false components that fall on normal variants."""

    def __init__(self) -> None:
        self._present: dict[str, set[tuple[str, int]]] = {}
        self._flagged: dict[str, set[tuple[str, int]]] = {}
        self._false_at: Counter[str] = Counter()
        self._false = 0
        self._false_elsewhere = 0

    def add_slice(self, study: str, mimics: list[Mimic], components: SliceComponents) -> None:
        """One evaluated slice: its variants and its components as counted."""
        for mimic in mimics:
            self._present.setdefault(mimic.kind, set()).add((study, mimic.key))
        false = components.false
        self._false += len(false)
        if not len(false):
            return
        predicted = components.predicted
        for label in false:
            hit = None
            for mimic in mimics:
                r0, r1 = max(mimic.rows[0] - MARGIN_PX, 0), mimic.rows[1] + MARGIN_PX + 1
                c0, c1 = max(mimic.cols[0] - MARGIN_PX, 0), mimic.cols[1] + MARGIN_PX + 1
                if np.any(predicted[r0:r1, c0:c1] == label):
                    hit = mimic
                    break
            if hit is None:
                self._false_elsewhere += 1
            else:
                self._false_at[hit.kind] += 1
                self._flagged.setdefault(hit.kind, set()).add((study, hit.key))

    def result(self) -> dict[str, Any] | None:
        """Per kind and in all, JSON-ready; None when no evaluated slice held a variant."""
        if not self._present:
            return None
        kinds: dict[str, dict[str, Any]] = {}
        present = flagged = 0
        for kind in sorted(self._present):
            n, k = len(self._present[kind]), len(self._flagged.get(kind, ()))
            kinds[kind] = {"variants": n, "reported": k, "share_reported": k / n,
                           "false_components": self._false_at[kind]}
            present, flagged = present + n, flagged + k
        return {
            "rule": f"a false component overlapping a variant's box grown by {MARGIN_PX} px, "
                    "on a slice where the variant is drawn",
            "kinds": kinds,
            "variants": present,
            "reported": flagged,
            "false_components": self._false,
            "false_components_at_variants": sum(self._false_at.values()),
            "false_components_elsewhere": self._false_elsewhere,
        }


def mimics_markdown(result: Mapping[str, Any]) -> str:
    """The per-kind table of :meth:`MimicTally.result`."""
    lines = [
        "## False findings at normal variants",
        "",
        f"- rule: {result['rule']}",
        f"- {result['false_components_at_variants']} of {result['false_components']} false "
        f"components are at normal variants; {result['false_components_elsewhere']} elsewhere",
        "",
        "| variant | in the studies | reported (any slice) | false components |",
        "|---|---|---|---|",
    ]
    for kind, row in result["kinds"].items():
        lines.append(f"| {kind.replace('_', ' ')} | {row['variants']} | {row['reported']} "
                     f"({row['share_reported']:.0%}) | {row['false_components']} |")
    lines.append(f"| all | {result['variants']} | {result['reported']} "
                 f"({result['reported'] / result['variants']:.0%}) | "
                 f"{result['false_components_at_variants']} |")
    return "\n".join(lines) + "\n"

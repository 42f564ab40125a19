"""What an upload held besides the chosen series, and the error when it held no usable series."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from api.errors import InvalidUpload, NoCTSeries

MAX_REASONS_IN_DETAIL = 6
MAX_NAMES = 3


@dataclass(frozen=True)
class Rejection:
    """A file, a group of files or a series left out, the reason, and the error it maps to."""

    subject: str  # a file name, "12 files (a, b, c, ...)", or "series 3 'CT Body' (120 files)"
    reason: str
    error: type[InvalidUpload]
    files: int = 1


def gather_file_rejections(failures: Sequence[tuple[str, InvalidUpload]]) -> list[Rejection]:
    """One Rejection per distinct (error, reason), naming a few of its files."""
    names: dict[tuple[type[InvalidUpload], str], list[str]] = defaultdict(list)
    for name, failure in failures:
        names[(type(failure), failure.detail)].append(name)
    rejections = []
    for (error, reason), members in names.items():
        rejections.append(Rejection(_subject(members), reason, error, len(members)))
    rejections.sort(key=lambda r: (-r.files, r.reason))
    return rejections


def summary(rejections: Sequence[Rejection]) -> str:
    """'subject: reason; ...', largest first, a bounded number of them."""
    ordered = sorted(rejections, key=lambda r: -r.files)
    text = "; ".join(f"{r.subject}: {r.reason}" for r in ordered[:MAX_REASONS_IN_DETAIL])
    rest = len(ordered) - MAX_REASONS_IN_DETAIL
    return text + (f"; and {rest} more" if rest > 0 else "")


def no_series_error(
    file_rejections: Sequence[Rejection], series_rejections: Sequence[Rejection], files: int
) -> InvalidUpload:
    """The error for an upload without a usable series.

    A CT series that failed as a whole (inconsistent geometry, corrupt slices) names the
    problem best; otherwise, when every file failed for the same kind of reason, that kind
    (a single MR file is NotCT, a folder of JPEG process 10 slices UnsupportedCompression);
    otherwise NoCTSeries with the reasons.
    """
    if series_rejections:
        worst = max(series_rejections, key=lambda r: r.files)
        others = [r for r in [*series_rejections, *file_rejections] if r is not worst]
        tail = f" (also: {summary(others)})" if others else ""
        return worst.error(f"{worst.subject}: {worst.reason}{tail}")
    kinds = {r.error for r in file_rejections}
    if len(kinds) == 1:
        return kinds.pop()(summary(file_rejections))
    plural = "s" if files != 1 else ""
    return NoCTSeries(
        f"no axial CT image series among {files} file{plural}: {summary(file_rejections)}"
    )


def _subject(names: Sequence[str]) -> str:
    if len(names) == 1:
        return names[0]
    shown = ", ".join(names[:MAX_NAMES]) + (", ..." if len(names) > MAX_NAMES else "")
    return f"{len(names)} files ({shown})"

"""Uploads to files on disk: zips expanded safely, folders listed, clutter skipped.

A zip is extracted member by member under the folder it came in, with its own paths
(nested folders kept) after refusing absolute paths and ``..`` (path traversal), encrypted
or linked members, too many members, and too many bytes once inflated, counted as they are
written rather than trusted from the zip's directory (zip bombs). Directories, ``__MACOSX``,
hidden files and DICOMDIR indexes are skipped: a study is read from its image files.
"""

from __future__ import annotations

import errno
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from api.errors import InvalidUpload, UploadTooLarge

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
EXPANDED_SUFFIX = ".d"
CHUNK = 1 << 20
BAD_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})
# "a" and "a/b.dcm" in one zip: whichever comes second cannot be made.
CLASHING_PATH_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR})
SKIPPED_NAMES = frozenset({"DICOMDIR", "Thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what one upload may inflate to."""

    max_members: int = 20_000
    max_total_bytes: int = 4 << 30
    max_ratio: float = 200.0  # inflated / compressed, for members over 1 MiB


# Uncompressed CT compresses about 2-3x in a zip, already-compressed pixels not at all.
ZIP_EXPANSION_PER_UPLOAD_BYTE = 8


def zip_limits(max_upload_bytes: int) -> ZipLimits:
    """The zip limits of a service that takes uploads of at most ``max_upload_bytes``.

    What the zips of one upload inflate to is bounded by the upload limit times 8 (and never
    more than the default 4 GiB), so a small server's disk is not filled by a small zip.
    """
    default = ZipLimits()
    total = min(default.max_total_bytes, max_upload_bytes * ZIP_EXPANSION_PER_UPLOAD_BYTE)
    return ZipLimits(default.max_members, total, default.max_ratio)


def expand_upload(upload: Path, limits: ZipLimits | None = None) -> list[Path]:
    """Extract every zip lying in ``upload`` in place (the zip is removed); list the files."""
    limits = limits or ZipLimits()
    budget = limits.max_total_bytes
    for path in sorted(upload.iterdir()):
        if path.is_file() and not path.is_symlink() and is_zip(path):
            target = path.with_name(path.name + EXPANDED_SUFFIX)
            within = ZipLimits(limits.max_members, budget, limits.max_ratio)
            budget -= _inflated_size(extract_zip(path, target, within))
            path.unlink()
    return list_upload(upload)


def list_upload(upload: Path) -> list[Path]:
    """The candidate image files under ``upload``, sorted; links and clutter skipped."""
    found = []
    for path in sorted(upload.rglob("*")):
        relative = path.relative_to(upload)
        if path.is_symlink() or not path.is_file() or _is_clutter(PurePosixPath(relative)):
            continue
        found.append(path)
    return found


def gather_files(
    sources: Iterable[Path], scratch: Path, limits: ZipLimits | None = None
) -> list[Path]:
    """Local files, folders and zips (zips extracted under ``scratch``) as one file list."""
    files: list[Path] = []
    for number, source in enumerate(sources, start=1):
        if source.is_dir():
            files.extend(list_upload(source))
        elif not source.is_file():
            raise InvalidUpload(f"{source.name}: no such file or folder")
        elif is_zip(source):
            files.extend(extract_zip(source, scratch / f"zip-{number:03d}", limits))
        else:
            files.append(source)
    return files


def is_zip(path: Path) -> bool:
    """A zip archive by its first bytes (a DICOM file whose preamble mimics one is DICOM)."""
    with path.open("rb") as fp:
        head = fp.read(132)
    return head[:4] in ZIP_MAGIC and head[128:132] != b"DICM"


def extract_zip(archive: Path, dest: Path, limits: ZipLimits | None = None) -> list[Path]:
    """Extract ``archive`` under ``dest`` within ``limits``; the extracted files, sorted."""
    limits = limits or ZipLimits()
    dest.mkdir(parents=True, exist_ok=False)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _checked_members(zf, limits)
            written = 0
            files = []
            for info, parts in members:
                target = _unique(dest.joinpath(*parts))
                written += _extract_member(zf, info, target, limits.max_total_bytes - written)
                files.append(target)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise InvalidUpload(f"{archive.name}: a damaged or unsupported zip ({exc})") from exc
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if exc.errno in BAD_NAME_ERRNOS:
            raise InvalidUpload(f"{archive.name}: a member name this system cannot store") from exc
        if exc.errno in CLASHING_PATH_ERRNOS:
            raise InvalidUpload(
                f"{archive.name}: a member is both a file and a folder of the same name"
            ) from exc
        raise
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return sorted(files)


def _checked_members(
    zf: zipfile.ZipFile, limits: ZipLimits
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members to extract with their safe relative paths; refuses the whole zip if unsafe."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UploadTooLarge(
            f"the zip holds {len(infos)} members; the limit is {limits.max_members}"
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_total_bytes:
        raise UploadTooLarge(
            f"the zip inflates to {declared} bytes; the limit is {limits.max_total_bytes}"
        )
    members = []
    for info in infos:
        parts = safe_parts(info.filename)
        if info.is_dir() or _is_clutter(PurePosixPath(*parts)):
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidUpload(f"the zip member {info.filename!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise InvalidUpload(f"the zip member {info.filename!r} is encrypted")
        if info.file_size > CHUNK and info.file_size > limits.max_ratio * max(
            1, info.compress_size
        ):
            raise UploadTooLarge(f"the zip member {info.filename!r} inflates suspiciously far")
        members.append((info, parts))
    return members


def safe_parts(name: str) -> tuple[str, ...]:
    """A zip member name as relative path parts; InvalidUpload for traversal or absolute paths."""
    unified = name.replace("\\", "/")
    if "\x00" in unified or unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise InvalidUpload(f"the zip member {name!r} has an absolute or invalid path")
    parts = tuple(part for part in unified.split("/") if part not in ("", "."))
    if ".." in parts:
        raise InvalidUpload(f"the zip member {name!r} points outside the archive (path traversal)")
    if not parts:
        raise InvalidUpload(f"the zip member {name!r} has an empty name")
    return parts


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Copy one member, counting the inflated bytes against ``budget``; bytes written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as source, target.open("xb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise UploadTooLarge("the zip inflates past the upload size limit")
            out.write(chunk)
    return written


def _unique(target: Path) -> Path:
    """``target``, or ``name~2`` etc. where a member of the same name came first."""
    candidate, number = target, 1
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.name}~{number}")
    return candidate


def _is_clutter(relative: PurePosixPath) -> bool:
    parts = relative.parts
    return any(part == "__MACOSX" or part.startswith(".") for part in parts) or (
        bool(parts) and parts[-1].upper() in {n.upper() for n in SKIPPED_NAMES}
    )


def _inflated_size(files: list[Path]) -> int:
    return sum(path.stat().st_size for path in files)

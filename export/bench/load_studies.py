"""The studies a load test sends: phantoms from the project's generator, made once.

Each study is a folder of slice files and, beside it, the same files as one zip, so that
a user can send either without any work per request:

    <cache>/<set>/study_0000/0001.dcm ...
    <cache>/<set>/study_0000.zip
"""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "load-studies.json"


def prepared_studies(cache: Path, *, count: int, slices: int, size: int, seed: int = 0) -> Path:
    """The folder of ``count`` phantom studies of ``slices`` slices, written if not there yet."""
    folder = cache / f"load-{count}x{slices}-{size}px-s{seed}"
    marker = folder / MARKER
    wanted = {"count": count, "slices": slices, "size": size, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == wanted:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    quiet_generator_logs()
    for number in range(count):
        write_load_study(folder / f"study_{number:04d}", slices=slices, size=size,
                         seed=seed * 1000 + number)
    marker.write_text(json.dumps(wanted), encoding="utf-8")
    log.info("wrote %d phantom studies of %d slices under %s", count, slices, folder)
    return folder


def quiet_generator_logs() -> None:
    """highdicom and openjpeg log every frame at INFO: they would bury the progress line."""
    for name in ("highdicom", "openjpeg"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))


def write_load_study(folder: Path, *, slices: int, size: int, seed: int) -> None:
    """One phantom's slice files in ``folder`` and their zip at ``folder.zip``."""
    from export.phantoms import make_phantom, sample_spec, write_study

    # Lesions in every study: the users then have masks and overlays with findings to read.
    spec = sample_spec(seed, slices=slices, size=size, encoding="none", n_lesions=2)
    scratch = folder.with_name(folder.name + ".phantom")
    study = Path(write_study(make_phantom(spec), scratch))
    folder.mkdir(parents=True)
    for path in sorted((study / "dicom").glob("*.dcm")):
        path.rename(folder / path.name)
    shutil.rmtree(scratch)  # the truth (SEG, truth.json) is not sent
    with zipfile.ZipFile(folder.with_suffix(".zip"), "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.glob("*.dcm")):
            archive.write(path, f"{folder.name}/{path.name}")

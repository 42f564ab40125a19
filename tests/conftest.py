"""Fixtures shared by every tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A real PostgreSQL cluster for the tests of the job database.
from tests.postgres import postgres, postgres_url  # noqa: F401

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

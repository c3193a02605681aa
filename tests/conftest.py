"""Shared fixtures: the real-photo corpus and datasets generated from it into temp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("DEDUPD_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (CORPUS / "make_corpus.py").is_file():
        pytest.fail(f"shared corpus not found at {CORPUS}: set DEDUPD_CORPUS to the folder with make_corpus.py")
    return CORPUS


def generate(corpus: Path, out: Path, kind: str, *args: str) -> Path:
    """Run make_corpus.py into ``out/images`` with metadata in ``out/meta``; returns ``out``."""
    subprocess.run(
        [sys.executable, str(corpus / "make_corpus.py"), "--kind", kind, "--out", str(out / "images"),
         "--meta-dir", str(out / "meta"), "--workers", "2", *args],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path):
    """``dataset(kind, *args)`` → folder with ``images/`` and ``meta/``, generated once per session."""
    cache: dict[tuple[str, ...], Path] = {}

    def make(kind: str, *args: str) -> Path:
        key = (kind, *args)
        if key not in cache:
            cache[key] = generate(corpus_dir, tmp_path_factory.mktemp(kind), kind, *args)
        return cache[key]

    return make

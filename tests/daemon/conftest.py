"""Fixtures for the daemon tests: real daemon subprocesses and corpus datasets to feed them."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.daemon.helpers import DaemonProcess


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """``daemon_factory(roots, **config)`` → a configured (not yet started) :class:`DaemonProcess`.

    Every daemon made here is killed at teardown, whatever the test did; a test that wants a clean
    exit calls ``stop()`` itself (which asserts exit status 0).
    """
    made: list[DaemonProcess] = []

    def make(roots: list[Path], *, name: str | None = None, base: Path | None = None, **config: Any) -> DaemonProcess:
        d = DaemonProcess(base or tmp_path, roots, name=name or f"daemon{len(made)}", **config)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


@pytest.fixture(scope="session")
def mixed200(dataset) -> Path:
    """200 corpus images with known near and exact duplicates in nested folders (``images/``)."""
    return dataset("mixed", "--count", "200", "--nested") / "images"


@pytest.fixture(scope="session")
def mixed400(mixed200: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 distinct images for a heavier ingest: the 200 corpus files, plus each one turned a
    quarter and re-saved under ``turned/`` (new bytes and new hashes: one more decode each)."""
    out = tmp_path_factory.mktemp("mixed400") / "images"
    shutil.copytree(mixed200, out)
    for src in sorted(mixed200.rglob("*")):
        if src.is_file():
            dst = out / "turned" / src.relative_to(mixed200)
            dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(src) as im:
                im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(dst)
    return out

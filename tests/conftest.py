"""Shared fixtures: the real-photo corpus and datasets generated from it into temp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import live_processes

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


def _service_processes() -> set[int]:
    """multiprocessing's own helpers, alive for the whole session once started (not a leak)."""
    pids = set()
    try:
        from multiprocessing import forkserver, resource_tracker

        for helper, attr in ((forkserver._forkserver, "_forkserver_pid"), (resource_tracker._resource_tracker, "_pid")):
            pid = getattr(helper, attr, None)
            if pid:
                pids.add(pid)
    except (ImportError, AttributeError):
        pass
    return pids


#: third-party threads that live for the whole session once started (not a leak of the test's)
_SESSION_THREADS = frozenset({"tqdm_monitor"})


@pytest.fixture(autouse=True)
def no_leaked_threads_or_processes():
    """Fail a test that leaves a thread or a child process running (watchdog's fixture idea)."""
    import threading
    import time

    threads_before = set(threading.enumerate())
    procs_before = live_processes(parent=os.getpid())
    yield
    thumbnails = sys.modules.get("dedupd.reports.thumbnails")
    if thumbnails is not None:  # a process-wide pool (as in `dedupd report`): stopped between tests
        thumbnails.stop_workers()
    deadline = time.monotonic() + 5
    while True:
        threads = [t for t in threading.enumerate()
                   if t not in threads_before and t.is_alive() and t.name not in _SESSION_THREADS]
        procs = live_processes(parent=os.getpid()) - procs_before - _service_processes()
        if (not threads and not procs) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not threads, f"test left threads running: {[t.name for t in threads]}"
    assert not procs, f"test left child processes running: {sorted(procs)}"

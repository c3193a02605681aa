"""dedupd.parallel: available CPUs (affinity and cgroup quota), pools that never fork, the progress bar."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dedupd import parallel
from dedupd.methods import PHash
from tests.methods.pool_probe import parent_and_torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "content,expected",
    [("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1),
     ("garbage\n", None)],
)
def test_cgroup_v2_quota(tmp_path, content, expected):
    (tmp_path / "cpu.max").write_text(content)
    missing = (tmp_path / "no1", tmp_path / "no2")
    assert parallel.cgroup_cpu_limit(tmp_path / "cpu.max", missing) == expected


def test_cgroup_v1_quota_and_no_cgroup(tmp_path):
    quota, period = tmp_path / "q", tmp_path / "p"
    quota.write_text("300000\n")
    period.write_text("100000\n")
    assert parallel.cgroup_cpu_limit(tmp_path / "none", (quota, period)) == 3
    quota.write_text("-1\n")
    assert parallel.cgroup_cpu_limit(tmp_path / "none", (quota, period)) is None
    assert parallel.cgroup_cpu_limit(tmp_path / "none", (tmp_path / "x", tmp_path / "y")) is None


def test_available_cpus_respects_affinity_and_quota(monkeypatch):
    affinity = len(os.sched_getaffinity(0))
    assert 1 <= parallel.available_cpus() <= affinity
    monkeypatch.setattr(parallel, "cgroup_cpu_limit", lambda: 1)
    assert parallel.available_cpus() == 1
    monkeypatch.setattr(parallel, "cgroup_cpu_limit", lambda: 10_000)
    assert parallel.available_cpus() == affinity
    monkeypatch.setattr(parallel, "cgroup_cpu_limit", lambda: None)
    assert parallel.available_cpus() == affinity


def test_pool_never_forks_the_caller():
    """Workers are children of the forkserver, and do not inherit modules this process loaded."""
    import torch  # noqa: F401 - the caller has loaded torch: it must not be forked

    assert parallel.pool_context().get_start_method() in ("forkserver", "spawn")
    results = parallel.pmap(parent_and_torch, range(4), 2, chunksize=1)
    assert len(results) == 4
    assert all(ppid != os.getpid() for ppid, _ in results)
    assert not any(has_torch for _, has_torch in results)


def test_worker_count_must_be_an_int():
    with pytest.raises(TypeError, match="workers must be an int"):
        parallel.pmap(str, [1, 2], "2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="num_enc_workers"):
        PHash(verbose=False).encode_images(".", num_enc_workers=2.5)  # type: ignore[arg-type]
    assert parallel.pmap(str, [1, 2], None) == ["1", "2"]
    assert parallel.pmap(str, [1, 2], -3) == ["1", "2"]


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_is_written_to_a_non_terminal():
    out = _Pipe()
    with parallel.Progress(3, "Encoding", stream=out) as bar:
        for _ in range(3):
            bar.advance()
    text = out.getvalue()
    assert text.startswith("\rEncoding:   0%|")
    assert text.endswith("\n") and "100%|" in text.rsplit("\r", 1)[-1] and "3/3" in text.rsplit("\r", 1)[-1]
    empty = _Pipe()
    parallel.Progress(0, stream=empty).close()
    assert empty.getvalue().rsplit("\r", 1)[-1].startswith("0it [")
    quiet = _Pipe()
    parallel.Progress(3, stream=quiet, enabled=False).close()
    parallel.Progress(3, stream=quiet, terminal_only=True).close()
    assert quiet.getvalue() == ""


def test_verbose_encode_images_shows_progress_when_captured(tmp_path, corpus_dir):
    for k in range(3):
        (tmp_path / f"{k}.jpg").write_bytes((corpus_dir / "base" / f"b000{k}.jpg").read_bytes())
    err = _Pipe()
    with contextlib.redirect_stderr(err):
        PHash(verbose=True).encode_images(tmp_path, num_enc_workers=0)
    assert "100%|" in err.getvalue() and "3/3" in err.getvalue()
    err = _Pipe()
    with contextlib.redirect_stderr(err):
        PHash(verbose=False).encode_images(tmp_path, num_enc_workers=0)
    assert err.getvalue() == ""


def _run_script(tmp_path, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def photos(tmp_path, corpus_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(4):
        (folder / f"{k}.jpg").write_bytes((corpus_dir / "base" / f"b000{k}.jpg").read_bytes())
    return folder


def test_unguarded_script_without_torch_or_threads_forks_as_imagededup(tmp_path, photos):
    """A script with no `if __name__ == "__main__":` guard works, as with imagededup (which forks)."""
    res = _run_script(tmp_path, f"""
        from dedupd import parallel
        from dedupd.methods import PHash
        print("CONTEXT", parallel.pool_context().get_start_method())
        print("HASHED", len(PHash(verbose=False).encode_images({str(photos)!r}, num_enc_workers=2)))
        """)
    assert res.returncode == 0, res.stderr
    assert "CONTEXT fork" in res.stdout and "HASHED 4" in res.stdout


def test_unguarded_script_with_a_thread_does_not_fork_and_still_gets_its_result(tmp_path, photos):
    """With another thread running, workers start from a forkserver; an unguarded script's workers then
    cannot start (they re-import it), so the work runs in the script's process with a warning saying why."""
    res = _run_script(tmp_path, f"""
        import logging, threading
        logging.basicConfig(level=logging.WARNING)
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        from dedupd import parallel
        from dedupd.methods import PHash
        print("CONTEXT", parallel.pool_context().get_start_method())
        print("HASHED", len(PHash(verbose=False).encode_images({str(photos)!r}, num_enc_workers=2)))
        stop.set()
        """)
    assert res.returncode == 0, res.stderr
    assert "CONTEXT forkserver" in res.stdout and "HASHED 4" in res.stdout
    assert "__main__" in res.stderr and "num_enc_workers=0" in res.stderr  # the warning names the fix


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
@pytest.mark.parametrize("cap", [1, 4, 16])
def test_guided_chunks_cover_every_item_and_finish_the_workers_together(workers: int, cap: int) -> None:
    import heapq
    import math

    from dedupd.cpus import guided_chunks

    for n in range(0, 300):
        sizes = guided_chunks(n, workers, cap)
        assert sum(sizes) == n and all(1 <= s <= cap for s in sizes), (n, sizes)
        assert sizes == sorted(sizes, reverse=True), sizes
        # each worker takes the next unit when it is free: with equal costs nobody waits on a big last unit
        busy = [0] * workers
        for s in sizes:
            heapq.heappush(busy, heapq.heappop(busy) + s)
        assert max(busy) == math.ceil(n / workers), (n, sizes)

"""The decode workers' server leaves with its daemon even when a ``kill -9`` lands during its preload.

multiprocessing's forkserver notices its parent's end (the end of file of a pipe) only once its
preload is done, and every fork request the parent sent carries a copy of that pipe's write end: a
daemon killed while its server still imported the decode stack (a busy machine, numba compiling in a
fresh checkout) left the server running for seconds, then forking the workers asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon.test_worker_preload import _group

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import concurrent.futures as cf, os, sys, threading, time
from dedupd.daemon.encoder import exit_with_parent
from dedupd.daemon.forkserver import start_early, worker_context
t0 = time.monotonic()
start_early()
pool = cf.ProcessPoolExecutor(1, mp_context=worker_context(), initializer=exit_with_parent, initargs=(os.getpid(),))
first = []
# a fork request (the submit waits for the fork), queued while the server preloads, as the daemon's
# threads send them
threading.Thread(target=lambda: first.append(pool.submit(os.getpid)), daemon=True).start()
if sys.argv[1] == "kill":
    time.sleep(0.2)  # the server is preloading now
    os.kill(os.getpid(), 9)
while not first:
    time.sleep(0.01)
first[0].result()
print(time.monotonic() - t0, flush=True)
"""


def _run(mode: str) -> tuple[subprocess.Popen[str], float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, mode], env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    t0 = time.monotonic()
    proc.wait(120)
    return proc, time.monotonic() - t0


def _cleanup(proc: subprocess.Popen[str]) -> None:
    for pid in _group(proc.pid):
        os.kill(pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()


def test_server_killed_parent_during_preload_exits_at_once() -> None:
    undisturbed, _ = _run("wait")
    try:
        assert undisturbed.returncode == 0 and undisturbed.stdout is not None
        preload_s = float(undisturbed.stdout.read())  # start, preload, first fork and task
    finally:
        _cleanup(undisturbed)
    killed, _ = _run("kill")
    try:
        assert killed.returncode == -signal.SIGKILL
        t0 = time.monotonic()
        while _group(killed.pid) and time.monotonic() - t0 < 30:
            time.sleep(0.02)
        gone_s = time.monotonic() - t0
        assert _group(killed.pid) == []
        # without the guard the server outlived its parent by the rest of its preload (~0.8-1.5 s here)
        assert gone_s < 0.5 * preload_s, f"server gone {gone_s:.2f} s after the kill; its start took {preload_s:.2f} s"
    finally:
        _cleanup(killed)


def test_a_scan_running_as_pid_1_gets_its_workers(tmp_path: Path) -> None:
    """In a container the daemon is often PID 1 itself (no init): its server's parent is then
    PID 1 too, which must not read as "the daemon is gone". Run in a new PID namespace."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted((ROOT / "dedupd" / "demo_photos").glob("*.jpg"))[:4]:
        (photos / src.name).write_bytes(src.read_bytes())
    probe = subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a PID namespace here: {probe.stderr.decode().strip()}")
    out = subprocess.run(
        ["unshare", "--fork", "--pid", "--mount-proc", sys.executable, "-c",
         "import os, sys; from dedupd.cli import main; assert os.getpid() == 1; sys.exit(main(sys.argv[1:]))",
         "scan", str(photos), "--store-dir", str(tmp_path / "store"), "--report-dir", str(tmp_path / "reports"),
         "--json"],
        capture_output=True, text=True, timeout=180, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)["encoded"] == 4, out.stdout


def test_a_worker_of_a_server_without_this_preload_may_import_it() -> None:
    """The library's pools start the forkserver without the daemon's preload; a worker forked
    from it that imports this module (the thumbnail workers do) is not the server: its stack still
    holds the server's frames, and the guard used to end it (every thumbnail failed after a library
    call in the same process)."""
    code = (
        "import concurrent.futures as cf, multiprocessing as mp\n"
        "with cf.ProcessPoolExecutor(1, mp_context=mp.get_context('forkserver')) as pool:\n"
        "    print(pool.submit(eval, \"__import__('dedupd.daemon.forkserver').daemon.forkserver.PRELOAD\").result())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dedupd.daemon.forkserver" in out.stdout

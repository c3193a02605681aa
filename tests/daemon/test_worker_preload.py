"""The decode workers fork from a server that loaded the decode stack once (dedupd.daemon.preload)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import concurrent.futures as cf, json, sys, time

def state():
    from dedupd import imaging
    from dedupd.daemon import encoder
    return {"prepared": encoder._prepared, "min_pixels": imaging.ACCELERATE_MIN_PIXELS,
            "numba": "numba" in sys.modules, "scipy": "scipy.fftpack" in sys.modules}

def timed_start(ctx):
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        first = pool.submit(state).result()
    return first, time.perf_counter() - t0

if __name__ == "__main__":
    from dedupd.daemon.forkserver import start_early, worker_context
    start_early()
    ctx = worker_context()
    warm = timed_start(ctx)  # prepared by the server (start_early), not by this worker
    again = timed_start(ctx)
    json.dump({"state": warm[0], "second_state": again[0], "second_start_s": again[1],
               "main_has_numba": "numba" in sys.modules}, sys.stdout)
"""


def test_workers_start_with_the_stack_loaded(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    res = json.loads(out.stdout)
    from dedupd import imaging, resample

    want = {"prepared": True, "min_pixels": imaging.SMALL_IMAGE_PIXELS if resample.available() else 1_000_000,
            "numba": resample.available(), "scipy": True}
    assert res["state"] == want and res["second_state"] == want
    # the daemon process itself never loads the compiled resize (nor decodes anything)
    assert res["main_has_numba"] is False


HOLDER = """
import concurrent.futures as cf, os, sys, time
from dedupd.daemon.encoder import exit_with_parent
from dedupd.daemon.forkserver import start_early, worker_context
start_early()
pool = cf.ProcessPoolExecutor(1, mp_context=worker_context(), initializer=exit_with_parent, initargs=(os.getpid(),))
pool.submit(os.getpid).result()
print("ready", flush=True)
time.sleep(300)
"""


def _group(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry))
    return out


def test_server_and_workers_exit_after_a_kill9_of_their_parent():
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert len(_group(proc.pid)) >= 3  # the holder, the preloaded server, a worker
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 3.0  # as the daemon's kill -9 test allows
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _group(proc.pid) == []
    finally:
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait(10)

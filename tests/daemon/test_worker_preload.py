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

def after_files(paths, spec):
    from dedupd.daemon import encoder
    got = [state()]
    for k in range(0, len(paths), 8):  # units of 8, as the pipeline would send them
        ok = all(r.ok for r in encoder.encode_many(paths[k:k + 8], spec))
        got.append({**state(), "ok": ok})
    return got

if __name__ == "__main__":
    from dedupd.daemon.encoder import EncodeSpec
    from dedupd.daemon.forkserver import start_early, worker_context
    start_early()
    ctx = worker_context()
    warm = timed_start(ctx)  # prepared by the server (start_early), not by this worker
    again = timed_start(ctx)
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        later = pool.submit(after_files, sys.argv[1:], EncodeSpec(methods=("phash", "dhash"))).result()
    json.dump({"state": warm[0], "second_state": again[0], "second_start_s": again[1], "later": later,
               "main_has_numba": "numba" in sys.modules}, sys.stdout)
"""


def test_workers_start_with_the_stack_loaded(tmp_path):
    from PIL import Image

    from dedupd import imaging, resample
    from dedupd.daemon.encoder import ACCELERATE_AFTER_FILES

    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    files = []
    for k in range(ACCELERATE_AFTER_FILES + 8):
        files.append(str(tmp_path / f"{k}.png"))
        Image.new("RGB", (40, 30), (k, 2 * k, 3 * k)).save(files[-1])
    # a cold numba cache is built by the server (not in a time-limited decode), then loaded by it
    built_first = resample.available() and not resample.cache_warm()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, str(script), *files], capture_output=True, text=True, env=env, timeout=120,
                         check=True)
    res = json.loads(out.stdout)

    # forked with the hash stack loaded; the compiled resize not yet (a short scan never waits for it)
    accelerated = {"prepared": True, "min_pixels": imaging.SMALL_IMAGE_PIXELS, "numba": True, "scipy": True}
    want = accelerated if built_first else {"prepared": True, "min_pixels": 1_000_000, "numba": False, "scipy": True}
    assert res["state"] == want and res["second_state"] == want
    # ... until the worker has been given ACCELERATE_AFTER_FILES files: then for every size
    accelerated = {**accelerated, "ok": True} if resample.available() else {**want, "ok": True}
    given = [8 * k for k in range(len(res["later"]))]
    assert res["later"] == [want] + [{**want, "ok": True} if n < ACCELERATE_AFTER_FILES else accelerated
                                     for n in given[1:]]
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

"""Helpers shared by the benchmark scripts: datasets, forked measurements, machine information.

Not part of the dedupd package; imported by ``bench/*.py`` only.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import pickle
import platform
import select
import shlex
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path(os.environ.get("DEDUPD_CORPUS", ROOT.parent / "shared" / "corpus"))
DEFAULT_DATA = Path(os.environ.get("DEDUPD_BENCH_DATA", "/tmp/dedupd-bench-data"))

if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


# -- datasets ----------------------------------------------------------------------------------


def dataset(corpus: Path, data_dir: Path, name: str, *args: str) -> Path:
    """Generate (once, cached under ``data_dir/name``) a dataset with the corpus generator.

    Images go to ``data_dir/name/img``, ``ground_truth.json`` and ``transforms.json`` to
    ``data_dir/name``. Returns ``data_dir/name``.
    """
    meta = data_dir / name
    img = meta / "img"
    stamp = meta / "args.json"
    want = list(args)
    if stamp.is_file() and json.loads(stamp.read_text()) == want and (meta / "ground_truth.json").is_file():
        return meta
    meta.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(corpus / "make_corpus.py"),
        *want,
        "--out",
        str(img),
        "--meta-dir",
        str(meta),
        "--overwrite",
        "--quiet",
    ]
    log(f"generating {name}: {' '.join(shlex.quote(c) for c in cmd[1:])}")
    subprocess.run(cmd, check=True)
    stamp.write_text(json.dumps(want))
    return meta


# -- output --------------------------------------------------------------------------------------

_T0 = time.perf_counter()



# The encoding benchmarks' photo sets (bench_encode, bench_resample, bench_thumbnails, quality), one
# spec each: ``dataset(corpus, data_dir, *camera_set(24))``; every script then reads the same cache.


def camera_set(count: int) -> tuple[str, ...]:
    """``count`` 12 MP photos, half of them edited copies, as JPEG, PNG and WebP."""
    return (f"enc-12mp-{count}", "--kind", "mixed", "--count", str(count), "--megapixels", "12", "--transforms",
            "jpeg60,png,webp,brighter20,noise5", "--dup-fraction", "0.5", "--exact-fraction", "0", "--seed", "12")


def web_set(count: int) -> tuple[str, ...]:
    """``count`` 640 px JPEGs with their duplicates."""
    return f"enc-640-{count}", "--kind", "mixed", "--count", str(count), "--seed", "640"


def tiny_set(count: int) -> tuple[str, ...]:
    """``count`` 64 px JPEGs with their duplicates."""
    return f"enc-tiny-{count}", "--kind", "mixed", "--count", str(count), "--side", "64", "--seed", "20000"


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` in this process (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def quiet_reference() -> None:
    """imagededup attaches its own INFO handlers to its loggers: raise them to WARNING."""
    try:  # the CNN class binds its logger (and logs) in __init__: create it now at WARNING
        from imagededup.utils.logger import return_logger

        return_logger("imagededup.methods.cnn")
    except ImportError:
        pass
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.WARNING)


# -- memory ------------------------------------------------------------------------------------


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS; returns the current RSS in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_kb("VmRSS")


def peak_kb() -> int:
    return _status_kb("VmHWM")


def children_peak_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


# -- forked measurements -------------------------------------------------------------------------


def measure(
    setup: Callable[[], Any],
    run: Callable[[Any], Any],
    repeats: int,
    *,
    check: Callable[[Any, Any], Any] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``run(state)`` ``repeats`` times in a forked child process and time each run.

    ``setup()`` builds the inputs inside the child (not timed, not counted in memory). The peak
    memory is the largest RSS above the post-setup baseline reached by the child, or by any
    process it started (pool workers: their own peak, not the sum over workers).

    Returns:
        ``{"times": [...], "median": s, "peak_mb": MB, "check": check(state, last result)}``,
        or ``{"error": text}`` / ``{"timeout": seconds}``.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        os.setpgid(0, 0)  # own process group, so a timeout can stop pool workers too
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Pool.terminate() relies on SIGTERM killing workers
        try:
            state = setup()
            base = reset_peak()
            times = []
            result = None
            for _ in range(repeats):
                result = None
                t0 = time.perf_counter()
                result = run(state)
                times.append(time.perf_counter() - t0)
            own = peak_kb() - base
            kids = children_peak_kb() - base if children_peak_kb() else 0
            out = {
                "times": times,
                "median": statistics.median(times),
                "peak_mb": max(own, kids, 0) / 1024,
                "check": check(state, result) if check else None,
            }
        except BaseException:  # noqa: BLE001 - report anything to the parent
            out = {"error": traceback.format_exc()}
        data = pickle.dumps(out)
        with os.fdopen(wfd, "wb") as fh:
            fh.write(data)
        os._exit(0)
    os.close(wfd)
    chunks: list[bytes] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    done = False
    try:
        with os.fdopen(rfd, "rb") as fh:
            while True:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([fh], [], [], wait)
                if not ready:
                    return {"timeout": timeout}
                chunk = os.read(fh.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        done = True
    finally:
        if not done:  # timeout, Ctrl-C or SIGTERM: stop the child and its pool workers
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
    if not chunks:
        return {"error": "child exited without a result"}
    return pickle.loads(b"".join(chunks))


def measure_alternating(
    specs: dict[str, tuple], repeats: int, *, timeout: float | None = None
) -> dict[str, dict[str, Any]]:
    """Measure several ``(setup, run, check)`` specs in rounds, one run each per round, rotating
    the order, so that a change of machine load affects all of them alike. Each run is its own
    forked process; returns per label the median time, the largest peak memory and the first check.
    """
    labels = list(specs)
    acc: dict[str, dict[str, Any]] = {k: {"times": [], "peak_mb": 0.0, "check": None} for k in labels}
    failed: dict[str, dict[str, Any]] = {}
    for r in range(repeats):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            if label in failed:
                continue
            setup, run, check = specs[label]
            res = measure(setup, run, 1, check=check if r == 0 else None, timeout=timeout)
            if "median" not in res:
                failed[label] = res
                continue
            a = acc[label]
            a["times"] += res["times"]
            a["peak_mb"] = max(a["peak_mb"], res["peak_mb"])
            if r == 0:
                a["check"] = res["check"]
    out = {}
    for label in labels:
        if label in failed:
            out[label] = failed[label]
        else:
            a = acc[label]
            out[label] = {**a, "median": statistics.median(a["times"])}
    return out


def install_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that running measurements are stopped on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# -- machine -------------------------------------------------------------------------------------


def _versions(packages: list[str]) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "-"
    return out


def machine_info(packages: list[str]) -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = _status_meminfo()
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        commit += " (+ uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "ram_gb": mem,
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": _versions(packages),
        "commit": commit,
        "command": "python "
        + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
    }


def _status_meminfo() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def machine_markdown(info: dict[str, Any], load_end: tuple[float, float, float], duration: float) -> str:
    v = info["versions"]
    la = ", ".join(f"{x:.2f}" for x in info["loadavg"])
    le = ", ".join(f"{x:.2f}" for x in load_end)
    return "\n".join(
        [
            f"* Date: {info['date']}; duration of the run: {duration / 60:.1f} min",
            f"* Command: `{info['command']}` (dedupd commit {info['commit']})",
            (
                f"* Machine: {info['cpu']}, {info['cores']} cores ({info['affinity']} usable), "
                f"{info['ram_gb']} GB RAM; {info['platform']}"
            ),
            f"* Load average (1, 5, 15 min) at start: {la}; at end: {le}",
            f"* Python {info['python']}; " + ", ".join(f"{k} {val}" for k, val in v.items()),
        ]
    )


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    if seconds >= 0.001:
        return f"{seconds * 1000:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_ratio(ref: float | None, ours: float | None) -> str:
    if not ref or not ours:
        return "-"
    r = ref / ours
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"

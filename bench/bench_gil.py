"""How long one thread of the daemon holds the GIL during a SIGHUP threshold change: the figure
behind "``status`` answers < 100 ms throughout" that does not depend on the machine's load.

The daemon runs in this process (``Daemon.run`` on a thread, the real socket, store and
reports), on a library kept by ``bench_scale.py --keep``; a probe thread sleeps 0.5 ms at a time
and measures how late each wake-up is. A late wake-up is a stretch in which no other thread let
go of the GIL (one long C call: a sort, a copy, an encode) -- or in which the machine gave this
process no CPU: each gap counts as at most the CPU time the busiest other thread used meanwhile
(its own CPU clock), and is attributed to that thread's frame when the probe got the GIL back,
i.e. the line of the long call.
``status`` is asked over the socket every 20 ms meanwhile (new connection each).

    python bench/bench_gil.py WORK                        # phash 10 → 8 once, after `watching`
    PYTHONPATH=/other/checkout python bench/bench_gil.py WORK   # the same for another tree

The config's threshold is set back to 10 first; the run ends when ``groups.json`` shows 8 and
``duplicates.json`` / ``report.html`` have been written again after it (made due at once, not
9x their last write time later as the daemon spaces them).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _cpu(clock: int) -> float:
    try:
        return time.clock_gettime(clock)
    except OSError:  # the thread ended
        return 0.0


class Probe:
    """A thread that sleeps ``tick`` s at a time and records how late it wakes up."""

    def __init__(self, tick: float = 0.0005, report_ms: float = 5.0) -> None:
        self.tick, self.report_s = tick, report_ms / 1000
        self.gaps: list[float] = []  # min(late wake-up, the busiest thread's CPU time meanwhile): see _run
        self.walls: list[float] = []  # how late each wake-up was
        self.where: dict[str, list[float]] = collections.defaultdict(list)
        self.on = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gil-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = threading.get_ident()
        clocks: dict[int, int] = {}  # thread ident → its CPU clock
        names: dict[int, str] = {}
        before: dict[int, float] = {}
        while not self._stop.is_set():
            if len(clocks) != threading.active_count() - 1:
                clocks, names = {}, {}
                for th in threading.enumerate():
                    if th.ident is not None and th.ident != me:
                        with contextlib.suppress(OSError):
                            clocks[th.ident] = time.pthread_getcpuclockid(th.ident)
                            names[th.ident] = th.name
                before = {}
            t = time.perf_counter()
            if self.on.is_set():
                before = {i: _cpu(c) for i, c in clocks.items()}
            time.sleep(self.tick)
            wall = time.perf_counter() - t - self.tick
            if not self.on.is_set() or not before:
                continue
            # each thread's CPU time meanwhile: the GIL holder's is ~the gap, ~0 when the machine
            # gave the process no CPU (a loaded, niced run); a thread in a write or fsync without
            # the GIL also counts (its frame shows it): the smaller of the two estimates the hold
            spent = {i: _cpu(c) - before.get(i, 0.0) for i, c in clocks.items()}
            top = max(spent, key=spent.__getitem__) if spent else None
            gap = min(wall, spent[top]) if top is not None else 0.0
            self.gaps.append(gap)
            self.walls.append(wall)
            if gap < self.report_s or top is None:
                continue
            frame = sys._current_frames().get(top)
            if frame is None:
                continue
            code = frame.f_code
            where = f"{names.get(top, '?')}: {Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}"
            self.where[where].append(gap)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, top: int = 12) -> list[str]:
        g = sorted(self.gaps)
        if not g:
            return ["no samples"]
        pick = lambda q: g[min(len(g) - 1, int(q * len(g)))] * 1e3  # noqa: E731
        w = sorted(self.walls)
        out = [f"late wake-ups (wall): p99 {w[int(0.99 * len(w))] * 1e3:.1f} ms, p99.9 {w[int(0.999 * len(w))] * 1e3:.1f} "
               f"ms, max {w[-1] * 1e3:.1f} ms",
               f"GIL holds (min of late and the busiest thread's CPU) {len(g):,}: p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.1f} ms, p99.9 {pick(0.999):.1f} ms, "
               f"max {g[-1] * 1e3:.1f} ms; gaps > 10 ms: {sum(1 for x in g if x > 0.01)}, > 50 ms: "
               f"{sum(1 for x in g if x > 0.05)}"]
        ranked = sorted(self.where.items(), key=lambda kv: -max(kv[1]))[:top]
        for where, gaps in ranked:
            out.append(f"  max {max(gaps) * 1e3:6.1f} ms  n {len(gaps):4d}  {where}")
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="a library kept by bench_scale.py --keep")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--report-ms", type=float, default=5.0, help="attribute gaps longer than this")
    args = ap.parse_args()
    from dedupd.client import Client
    from dedupd.daemon.config import load_config
    from dedupd.daemon.service import Daemon

    work = args.work.resolve()
    raw = json.loads((work / "c.yaml").read_text())
    raw.update(methods={"phash": 10}, socket_path=tempfile.mkdtemp(prefix="bg-", dir="/tmp") + "/s")
    raw["log"] = {"format": "json", "level": "warning"}
    cfg_path = work / "c.yaml"
    cfg_path.write_text(json.dumps(raw))
    daemon = Daemon(load_config(str(cfg_path)), config_loader=lambda: load_config(str(cfg_path)))
    runner = threading.Thread(target=daemon.run, name="daemon-main", daemon=True)
    probe = Probe(report_ms=args.report_ms)
    t0 = time.monotonic()
    runner.start()
    client = Client(raw["socket_path"], timeout=120, retry_s=0)

    def status() -> dict[str, Any] | None:
        try:
            return client.get("/v1/status")
        except Exception:
            return None

    def until(pred: Any, what: str) -> float:
        while time.monotonic() - t0 < args.timeout:
            if daemon.stop_event.is_set():
                raise SystemExit("the daemon stopped")
            if pred():
                return time.monotonic() - t0
            time.sleep(0.05)
        raise SystemExit(f"timed out: {what}")

    try:
        until(lambda: (s := status()) is not None and s["state"] == "watching" and s["graph"] == "ready", "watching")
        t_w = time.monotonic()  # thumbnails made meanwhile owe another slow write: not waited for long
        until(lambda: (not daemon.reports.slow_pending or time.monotonic() - t_w > 30) and daemon._slow_since is None,
              "the first slow reports")
        time.sleep(1.0)
        print(f"watching after {time.monotonic() - t0:.1f} s; load average {os.getloadavg()[0]:.1f}")
        cfg_path.write_text(json.dumps({**raw, "methods": {"phash": 8}}))
        groups = Path(raw["report_dir"]) / "groups.json"
        lat: list[float] = []
        probe.on.set()
        dup_json = Path(raw["report_dir"]) / "duplicates.json"
        t1, t1_wall = time.monotonic(), time.time()
        daemon.request_reload()
        phases = {}
        done = False
        while not done and time.monotonic() - t1 < args.timeout:
            t = time.perf_counter()
            s = status()
            lat.append(time.perf_counter() - t)
            if "groups" not in phases and s is not None and s["graph"] == "ready":
                with open(groups, "rb") as f:
                    head = f.read(400).decode(errors="replace")
                if '"methods": {"phash": 8}' in head:
                    phases["groups"] = time.monotonic() - t1
                    daemon.reports.slow_due = 0.0  # the slow reports now, not 9x their last write time later
            if "groups" in phases and dup_json.stat().st_mtime > t1_wall and daemon._slow_since is None:
                phases["slow"] = time.monotonic() - t1
                done = True
            time.sleep(0.02)
        probe.on.clear()
        print(f"SIGHUP → groups.json {phases.get('groups', float('nan')):.2f} s, → duplicates.json + report.html "
              f"{phases.get('slow', float('nan')):.2f} s; load average {os.getloadavg()[0]:.1f}")
        print(f"status answers {len(lat)}: median {statistics.median(lat) * 1e3:.1f} ms, "
              f"max {max(lat) * 1e3:.1f} ms")
        for line in probe.summary():
            print(line)
    finally:
        probe.stop()
        daemon.stop_event.set()
        runner.join(60)


if __name__ == "__main__":
    main()

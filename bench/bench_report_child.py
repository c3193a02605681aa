"""``duplicates.json`` + ``report.html`` at scale: written in the daemon's process or by the report
child (:mod:`dedupd.reports.offline`), alternately, on a library kept by ``bench_scale.py --keep``.

The index is loaded from the store as the daemon loads it (edges linked, groups built), then each
write is measured: the CPU of the thread that asks for it (in process: the whole write; with the
child: streaming the job), its wall time, how far the process's peak RSS rose above its RSS before
(``VmHWM`` reset first), and the child's own CPU time and peak RSS.

    python bench/bench_report_child.py WORK [--repeat 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.profile_start import _reach, rss_mb  # noqa: E402
from dedupd.daemon.config import config_from_mapping  # noqa: E402
from dedupd.daemon.gcpause import gc_paused  # noqa: E402
from dedupd.daemon.loader import load_edges, load_index, usable_stamp  # noqa: E402
from dedupd.daemon.store import Store  # noqa: E402
from dedupd.reports.files import ReportWriter  # noqa: E402
from dedupd.reports.offline import ReportChild  # noqa: E402
from dedupd.reports.thumbnails import stop_workers  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="bench_scale work directory (c.yaml, store/)")
    ap.add_argument("--repeat", type=int, default=2, help="writes of each kind, alternated")
    args = ap.parse_args()
    raw = {k: v for k, v in json.loads((args.work / "c.yaml").read_text()).items() if k != "log"}
    raw["report_dir"] = tempfile.mkdtemp(prefix="bench-report-child-")
    config = config_from_mapping(raw, env={})
    rows: dict[str, list[tuple[float, ...]]] = {"in process": [], "child": []}
    with Store.open(config.store_dir, readonly=True) as store:
        stamp = usable_stamp(store, config)
        index = load_index(store, config, build_graph=False, reach=None if stamp is None else _reach(stamp))
        gc.freeze()
        if stamp is None or not stamp.complete:
            raise SystemExit("the store's edges are not complete: start the daemon on it once first")
        with gc_paused():
            load_edges(store, index, stamp)
        index.build_graph()
        writer = ReportWriter(raw["report_dir"])
        counts = writer.write_groups(index, config, store)
        for _ in range(args.repeat):
            for kind in rows:
                writer.child, writer.child_min_files = (ReportChild() if kind == "child" else None), 0
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM
                before = rss_mb()[0]
                cpu, wall = time.thread_time(), time.perf_counter()
                writer.write_slow(index, config, store, on_thumbnails=lambda: None)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                child = writer.child
                rows[kind].append((cpu, wall, rss_mb()[1] - before, child.cpu_seconds if child else 0.0,
                                   child.peak_rss_mb if child else 0.0))
    stop_workers()
    load = os.getloadavg()
    print(f"\n{len(index.files):,} files, {counts['groups']:,} groups; load average {load[0]:.1f} / {load[1]:.1f}; "
          f"medians of {args.repeat}, alternated")
    print("| duplicates.json + report.html | asking thread's CPU s | wall s | its process's peak RSS rise MB "
          "| child CPU s | child peak RSS MB |\n|---|---|---|---|---|---|")
    for kind, got in rows.items():
        med = [statistics.median(r[k] for r in got) for k in range(5)]
        print(f"| {kind} | {med[0]:.2f} | {med[1]:.1f} | {med[2]:.0f} | "
              + (f"{med[3]:.2f} | {med[4]:.0f} |" if kind == "child" else "- | - |"))


if __name__ == "__main__":
    main()

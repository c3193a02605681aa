"""Where a daemon start-up's CPU seconds and bytes go, phase by phase, in one process.

Runs what ``dedupd run`` does before the socket answers (the index load) and before every group is
back (the stored edges linked, the graph finished, ``groups.json`` written) on an existing store,
e.g. one kept by ``bench/bench_scale.py --keep``:

    python bench/profile_start.py WORK_DIR                 # phase table: CPU, wall, RSS
    python bench/profile_start.py WORK_DIR --cprofile 25   # plus the top 25 functions of the load
    python bench/profile_start.py WORK_DIR --snapshot      # the load from the index snapshot instead

``WORK_DIR`` holds ``c.yaml`` and ``store/`` (bench_scale's layout). Reports go to a temporary
directory; the store is opened read-only.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dedupd.daemon.config import config_from_mapping  # noqa: E402
from dedupd.daemon.gcpause import gc_paused  # noqa: E402
from dedupd.daemon.loader import load_edges, load_index, usable_stamp  # noqa: E402
from dedupd.daemon.store import Store  # noqa: E402
from dedupd.reports.files import ReportWriter  # noqa: E402


def rss_mb() -> tuple[float, float, float]:
    """(VmRSS, VmHWM, RssAnon) of this process in MB (RssAnon leaves out the store's mapped pages)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out["VmRSS"], out["VmHWM"], out["RssAnon"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="bench_scale work directory (c.yaml, store/)")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N", help="print the top N functions of the load")
    ap.add_argument("--snapshot", action="store_true",
                    help="adopt the store's index snapshot (written by the last clean stop; its code and config "
                         "digests are taken as this run's) instead of loading the records and linking the edges")
    args = ap.parse_args()
    raw = json.loads((args.work / "c.yaml").read_text())
    raw = {k: v for k, v in raw.items() if k != "log"}
    raw["report_dir"] = tempfile.mkdtemp(prefix="profile-start-")
    config = config_from_mapping(raw, env={})
    rows: list[tuple[str, float, float, float, float, float]] = []
    prof = cProfile.Profile() if args.cprofile else None

    def phase(name: str, fn):  # noqa: ANN001, ANN202
        c0, w0 = time.process_time(), time.perf_counter()
        if prof is not None:
            prof.enable()
        out = fn()
        if prof is not None:
            prof.disable()
        rows.append((name, time.process_time() - c0, time.perf_counter() - w0, *rss_mb()))
        return out

    with Store.open(config.store_dir, readonly=True) as store:
        stamp = usable_stamp(store, config)
        if args.snapshot:
            if stamp is None:
                raise SystemExit("the store's edges do not serve the config: no snapshot to adopt")
            adopted = phase("adopt_snapshot (socket answers after this; edges linked)",
                            lambda: _adopt(store, config, stamp))
            if adopted is None:
                raise SystemExit("the snapshot was not adopted (see the log above)")
            index, n_edges = adopted
            gc.freeze()
        else:
            index = phase("load_index (socket answers after this)",
                          lambda: load_index(store, config, build_graph=False,
                                             reach=None if stamp is None else _reach(stamp)))
            gc.freeze()
            if stamp is not None:
                def edges() -> int:
                    with gc_paused():
                        return load_edges(store, index, stamp)
                n_edges = phase("load_edges", edges)
            else:
                n_edges = 0
        if stamp is not None and stamp.complete:
            phase("build_graph (refilter what is due)", index.build_graph)
        else:  # the daemon derives in the background, for minutes at 1M: not a start-up phase
            print("the store's edges are not complete (a derivation is due): build_graph skipped")
        counts = phase("write_groups (groups.json)", lambda: ReportWriter(raw["report_dir"]).write_groups(
            index, config, store))
    load = os.getloadavg()
    print(f"\n{len(index.files):,} files, {index.content_count:,} contents, {n_edges:,} edges linked, "
          f"{counts.get('groups', 0):,} groups; load average {load[0]:.1f} / {load[1]:.1f}")
    print("| phase | CPU s | wall s | RSS after MB | peak RSS MB | anonymous after MB |\n|---|---|---|---|---|---|")
    for name, cpu, wall, rss, hwm, anon in rows:
        print(f"| {name} | {cpu:.2f} | {wall:.2f} | {rss:.0f} | {hwm:.0f} | {anon:.0f} |")
    cpu, wall = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"| total | {cpu:.2f} | {wall:.2f} | | | |")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.cprofile)


def _adopt(store, config, stamp):  # noqa: ANN001, ANN202
    """The snapshot adopted whatever dedupd tree wrote it (another checkout's code digest), under
    the config it was written with (this run's report folder differs); the store must be as then."""
    import logging

    import numpy as np

    from dedupd.daemon import snapshot

    logging.basicConfig(level=logging.INFO)
    with open(snapshot.snapshot_path(store), "rb") as f, np.load(f, allow_pickle=False) as z:
        seal = json.loads(bytes(z["meta"]).decode())["seal"]
    snapshot.code_digest = lambda: seal["code"]  # type: ignore[assignment]
    snapshot.config_digest = lambda _config: seal["config"]  # type: ignore[assignment] # (report_dir differs)
    return snapshot.adopt_snapshot(store, config, _reach(stamp))


def _reach(stamp):  # noqa: ANN001, ANN202
    from dedupd.daemon.index import Reach

    return Reach(stamp.radii, stamp.cnn)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Report thumbnails: how fast ``ensure_thumbnails`` makes a report's missing thumbnails.

Each run is a fresh process (the thumbnail workers started and warmed first, not timed) that makes
the thumbnails of N files into an empty cache, as a report does: wall time, thumbnails per second,
and the CPU of every process (the caller and its workers, from ``/proc``). With ``--before``
another checkout's ``dedupd`` runs the same sets, alternated with this one's; medians.

    python bench/bench_thumbnails.py                       # tiny JPEGs, 640 px JPEGs, 12 MP photos
    python bench/bench_thumbnails.py --before /work/main   # ... against another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, DEFAULT_DATA, ROOT, camera_set, dataset, log, tiny_set, web_set  # noqa: E402

# the measured child: warm the workers, then make every thumbnail once into a fresh cache
CHILD = """
import json, os, sys, tempfile, time
from dedupd.reports import thumbnails as T

def cpu_of_tree():
    # this process and its descendants (the forkserver and the thumbnail workers it forked)
    parent, ticks = {}, {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(pid)], ticks[int(pid)] = int(stat[1]), int(stat[11]) + int(stat[12])
    ours, grew = {os.getpid()}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in ours} - ours
        ours |= more
        grew = bool(more)
    return sum(ticks[p] for p in ours) / os.sysconf("SC_CLK_TCK")

def main():
    files = json.load(open(sys.argv[1]))
    T.start_workers()
    cache = tempfile.mkdtemp(prefix="thumbs-", dir=sys.argv[2])
    c0, t0 = cpu_of_tree(), time.perf_counter()
    names = T.ensure_thumbnails([(f, "%032x" % i) for i, f in enumerate(files)], cache)
    wall = time.perf_counter() - t0
    cpu = cpu_of_tree() - c0
    T.stop_workers()
    print(json.dumps({"wall": wall, "cpu": cpu, "made": sum(1 for v in names.values() if v)}))

if __name__ == "__main__":
    main()
"""


def run_once(tree: Path, listing: Path, work: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(listing), str(work)], env=env, cwd=work,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", type=Path, help="another dedupd checkout, alternated with this one")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="small sets, 1 repeat (smoke test)")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    sets = [(tiny_set(20000), 3000, "64 px JPEGs"), (web_set(2000), 1000, "640 px JPEGs"),
            (camera_set(24), 24, "12 MP photos")]  # the sets bench_encode.py makes
    if args.quick:
        sets = [(("thumbs-quick", "--kind", "mixed", "--count", "60", "--side", "64", "--seed", "5"), 60, "64 px JPEGs")]
    trees = {"this": ROOT}
    if args.before:
        trees["before"] = args.before.resolve()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-thumbs-") as tmp:
        work = Path(tmp)
        for spec, count, label in sets:
            name = spec[0]
            img = dataset(args.corpus, args.data_dir, *spec) / "img"
            files = sorted(str(p) for p in img.rglob("*") if p.is_file())[:count]
            listing = work / f"{name}.json"
            listing.write_text(json.dumps(files))
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
            for _ in range(repeats):
                for key, tree in trees.items():
                    runs[key].append(run_once(tree, listing, work))
                    log(f"{label} {key}: {runs[key][-1]}")
            for key in trees:
                wall = statistics.median(r["wall"] for r in runs[key])
                cpu = statistics.median(r["cpu"] for r in runs[key])
                rows.append((f"{label} ({len(files)})", key, f"{wall:.2f} s", f"{len(files) / wall:.0f}/s",
                             f"{cpu / len(files) * 1e3:.2f} ms", f"{runs[key][0]['made']:.0f}"))
    print(f"\nload average {os.getloadavg()[0]:.1f}; medians of {repeats}\n")
    print("| files | tree | wall | thumbnails/s | CPU a thumbnail (all processes) | made |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

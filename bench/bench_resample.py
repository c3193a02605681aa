#!/usr/bin/env python
"""CPU per file of a decode worker's encode path (decode + the daemon's default hashes: pHash, dHash
and their crop variants, exact mode; and pHash + dHash alone), this checkout against another one (``--before``, e.g.
/work/main), in alternated rounds of child processes; medians.

Each child loads the compiled passes as a worker does (``accelerate_small_images``), warms up on a
few files, then times every file of the set with ``time.process_time`` (its own CPU: decode, the
resizes, the hashes, Python), ``--repeats`` times over the set; it also checks that its hashes
equal those of Pillow's resizes alone (``resample.available`` off) on the first files, and the
parent checks that both checkouts give the same hashes for every file.

Rows: 640 px JPEGs (the daemon's ingest benchmark set) and 12 MP camera JPEGs; columns: decode
only, decode + hashes before and after, the ratio, the saving in ms per file, and the part after the
decode alone (the same decode code runs in both, so this column is less exposed to a load spike
during one checkout's round; the machine's load moves the whole figure by 10-30 % otherwise).

Usage::

    python bench/bench_resample.py --before /work/main
    python bench/bench_resample.py --before /work/main --rounds 3 --n640 300 --n12 6
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
from _common import DEFAULT_CORPUS, DEFAULT_DATA, ROOT, camera_set, dataset, log, web_set  # noqa: E402

#: the daemon's default (pHash and dHash with their crop hashes), and ``crop: false`` (the two alone)
CONFIGS = {"default": ["phash", "phash@c90", "phash@c81", "dhash", "dhash@c90", "dhash@c81"],
           "crop: false": ["phash", "dhash"]}

CHILD = r"""
import json, sys, time
from dedupd import imaging, resample
from dedupd.encoding import hashes_of
from dedupd.imaging import decode_file
files, methods, repeats, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
assert imaging.accelerate_small_images(), "numba is not installed"
for f in files[:3]:
    hashes_of(decode_file(f), methods)
hashes = {f: {k: int(v) for k, v in hashes_of(decode_file(f), methods).items()} for f in files}
decode, total = [], []
for _ in range(repeats):
    for f in files:
        t0 = time.process_time()
        image = decode_file(f)
        t1 = time.process_time()
        hashes_of(image, methods)
        t2 = time.process_time()
        decode.append(t1 - t0)
        total.append(t2 - t0)
available = resample.available
resample.available = lambda: False  # Pillow's resizes alone: the values the compiled passes must give
pillow_ok = all(hashes_of(decode_file(f), methods) == hashes[f] for f in files[:5])
resample.available = available
json.dump({"decode": decode, "total": total, "hashes": hashes, "pillow_ok": pillow_ok}, open(out, "w"))
"""


def run_child(checkout: Path, files: list[str], methods: list[str], repeats: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        subprocess.run([sys.executable, "-c", CHILD, json.dumps(files), json.dumps(methods), str(repeats), out.name],
                       check=True, env=env, cwd=str(checkout))
        return json.loads(Path(out.name).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, help="another checkout to compare with (e.g. /work/main)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds (child processes) per checkout")
    ap.add_argument("--repeats", type=int, default=2, help="passes over the set in each child")
    ap.add_argument("--n640", type=int, default=200, help="640 px files")
    ap.add_argument("--n12", type=int, default=6, help="12 MP files")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args()

    sets = {}
    if args.n640:
        meta = dataset(args.corpus, args.data_dir, *web_set(2000))
        files640 = sorted(str(p) for p in (meta / "img").glob("*.jpg"))[:args.n640]
        sets["640 px JPEG, default"] = (files640, CONFIGS["default"])
        sets["640 px JPEG, crop: false"] = (files640, CONFIGS["crop: false"])
    if args.n12:
        meta = dataset(args.corpus, args.data_dir, *camera_set(24))
        sets["12 MP JPEG, default"] = (sorted(str(p) for p in (meta / "img").glob("*.jpg"))[:args.n12], CONFIGS["default"])
    checkouts = {"after": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    rows = []
    for label, (files, methods) in sets.items():
        res: dict[str, dict[str, list[float]]] = {c: {"decode": [], "total": [], "rest": []} for c in checkouts}
        hashes: dict[str, dict] = {}
        for r in range(args.rounds):
            order = list(checkouts) if r % 2 == 0 else list(reversed(checkouts))
            for c in order:
                log(f"{label}: round {r + 1}/{args.rounds}, {c} ({len(files)} files x {args.repeats})")
                got = run_child(checkouts[c], files, methods, args.repeats)
                if not got["pillow_ok"]:
                    raise SystemExit(f"{c}: hashes differ from Pillow's resizes on {label}")
                res[c]["decode"].append(statistics.median(got["decode"]) * 1e3)
                res[c]["total"].append(statistics.median(got["total"]) * 1e3)
                res[c]["rest"].append(statistics.median(t - d for t, d in zip(got["total"], got["decode"])) * 1e3)
                hashes[c] = got["hashes"]
                log(f"  {c}: {res[c]['total'][-1]:.2f} ms a file (decode {res[c]['decode'][-1]:.2f})")
        if "before" in hashes and hashes["before"] != hashes["after"]:
            raise SystemExit(f"before and after give different hashes on {label}")
        med = {c: {k: statistics.median(v) for k, v in res[c].items()} for c in checkouts}
        row = [label, f"{len(files)}", f"{med['after']['decode']:.2f}"]
        if "before" in med:
            b, a = med["before"]["total"], med["after"]["total"]
            rb, ra = med["before"]["rest"], med["after"]["rest"]
            row += [f"{b:.2f}", f"{a:.2f}", f"{a / b:.2f}", f"{b - a:+.2f}", f"{rb:.2f} -> {ra:.2f} ({ra / rb:.2f})"]
        else:
            row += ["-", f"{med['after']['total']:.2f}", "-", "-", f"{med['after']['rest']:.2f}"]
        rows.append(row)
    head = ["set", "files", "decode ms", "before ms", "after ms", "after/before", "saved ms",
            "resizes + hashes ms (after/before)"]
    configs = "; ".join(f"{k}: {' '.join(v)}" for k, v in CONFIGS.items())
    print(f"\nCPU ms per file (median of per-file medians over {args.rounds} alternated rounds x {args.repeats} "
          f"passes), decode + the hashes ({configs}); hashes "
          "identical before/after and to Pillow's resizes\n")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for line in [head, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(line, widths)) + " |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Hamming search inside dedupd: multi-index hashing (MIH) vs popcount scan vs BK-tree vs faiss.

Tables (medians of ``--repeats``; every ratio is measured in the same run):

1. all pairs within a radius (``find_duplicates``, the daemon's graph build): ``hamming.all_pairs``
   (the plan its cost model picks: MIH self-join or scan) against the scan (measured up to 20k;
   above, one row block is timed and scaled by ``n^2/2`` pairs), the BK-tree (up to 20k) and,
   when ``faiss`` imports, faiss's ``IndexBinaryMultiHash`` range search (same substrings, up to
   20k) -- on random hashes with 30 % planted near copies and on *clustered* hashes (noisy copies
   of real photo hashes from the corpus: non-uniform bits, skewed MIH groups);
2. one query against n indexed hashes (the daemon, per new file): ``HashIndex.search`` p50/p95,
   alone and interleaved with adds (ingesting), against the scan and the BK-tree;
3. ``find_duplicates`` at 30k/50k against the reference imagededup ``find_duplicates``: the
   reference is timed at 2k and 4k hashes and extrapolated with ``t = c + a n^2`` (its brute
   force compares every query with every hash), or with ``--ref-full`` timed once per size in a
   ``nice -n 10`` child (minutes) and its map compared with ours (sha256 of the JSON); ours with
   the numpy join and, after its one-time load (printed), the compiled join; identical to the
   scan (checked);
4. ``find_duplicates`` at 1M hashes in a child process: wall time, the child's peak RSS
   (``getrusage(RUSAGE_CHILDREN)``), and a spot check of 2,000 random rows against a scan;
5. group skew on real photo hashes (largest 16-bit substring group vs the uniform expectation).

Usage::

    python bench/bench_search.py            # about 15-30 min on a loaded 2-core machine
    python bench/bench_search.py --quick    # about a minute
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, fmt_ratio, fmt_s, log, median_time, quiet_reference  # noqa: E402
from bench_library import synthetic_hashes  # noqa: E402

RADII = (0, 4, 8, 10, 12, 16)



def latencies(fn, queries: list[int]) -> list[float]:
    out = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t0)
    return out


def random_hashes(n: int, seed: int = 0) -> np.ndarray:
    from dedupd.core.hashes import hexes_to_array

    return hexes_to_array(synthetic_hashes(n, seed=seed).values())


def real_hashes(limit: int = 240) -> np.ndarray:
    """phash of the corpus photos (the non-uniform bits real hashes have)."""
    from dedupd.core.hashes import hexes_to_array
    from dedupd.methods import PHash

    files = sorted((DEFAULT_CORPUS / "base").glob("*.jpg"))[:limit]
    ph = PHash(verbose=False)
    return hexes_to_array([ph.encode_image(str(f)) for f in files])


def clustered_hashes(n: int, real: np.ndarray, seed: int = 0) -> np.ndarray:
    """Noisy copies of real photo hashes: each bit flipped with probability 0.2 (30 % of rows are
    closer copies of another row, 1-6 flips), so bits keep the photos' skew."""
    rng = np.random.default_rng(seed)
    base = real[rng.integers(0, len(real), n)]
    bits = rng.random((n, 64)) < 0.2
    noise = (bits.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    out = base ^ noise
    dup = rng.random(n) < 0.3
    src = rng.integers(0, n, n)
    flips = np.zeros(n, dtype=np.uint64)
    for _ in range(3):
        flips ^= np.left_shift(np.uint64(1), rng.integers(0, 64, n).astype(np.uint64))
    out[dup] = out[src[dup]] ^ flips[dup]
    return out


def scan_time(values: np.ndarray, radius: int, repeats: int) -> tuple[float, str]:
    """Scan time of all pairs: measured up to 20k, else a block of rows scaled to n^2/2 pairs."""
    from dedupd.core import hamming

    n = len(values)
    if n <= 20_000:
        return median_time(lambda: list(hamming.scan_pairs(values, radius)), repeats), ""
    rows = max(1, (1 << 22) // n) * 8
    block = values[:rows]

    def run() -> None:
        for s in range(0, rows, max(1, (1 << 22) // n)):
            part = block[s : s + max(1, (1 << 22) // n)]
            np.flatnonzero(np.bitwise_count(part[:, None] ^ values[None, :]) <= radius)

    t = median_time(run, repeats)
    return t / (rows * n) * (n * n / 2), " (e)"


def faiss_pairs_time(values: np.ndarray, radius: int, m: int) -> float | None:
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(1)
    codes = values.view(np.uint8).reshape(len(values), 8)
    t0 = time.perf_counter()
    index = faiss.IndexBinaryMultiHash(64, m, 64 // m)
    index.nflip = radius // m
    index.add(codes)
    index.range_search(codes, radius + 1)  # faiss counts distance < radius
    return time.perf_counter() - t0


def table_all_pairs(args, real: np.ndarray) -> list[str]:
    from dedupd.core import hamming, mih
    from dedupd.methods.hashing import _pairs_bktree

    rows = [
        "| data | n | radius | plan (tolerances) | dedupd all_pairs | scan | ratio scan/ours | BK-tree | faiss MultiHash |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in ("random", "clustered"):
        for n in args.pair_sizes:
            values = random_hashes(n) if kind == "random" else clustered_hashes(n, real)
            for radius in args.radii:
                plan = mih.best_plan(n, radius)
                ours = median_time(lambda v=values, r=radius: hamming.all_pairs(v, r), args.repeats)
                scan, mark = scan_time(values, radius, args.repeats)
                bk = median_time(lambda v=values, r=radius: _pairs_bktree(v, r), 1) if n <= 20_000 else None
                fa = None
                if plan is not None and n <= 20_000 and radius == 10:
                    fa = faiss_pairs_time(values, radius, len(plan.ranges))
                desc = "scan" if plan is None else f"MIH m={len(plan.ranges)} {plan.tolerances}"
                rows.append(
                    f"| {kind} | {n:,} | {radius} | {desc} | {fmt_s(ours)} | {fmt_s(scan)}{mark} "
                    f"| {fmt_ratio(scan, ours)} | {fmt_s(bk)} | {fmt_s(fa)} |"
                )
                log(rows[-1])
    return rows


def table_queries(args) -> list[str]:
    from dedupd.core import hamming
    from dedupd.core.bktree import BKTree
    from dedupd.core.hashindex import HashIndex

    rows = [
        "| n | radius | HashIndex p50 | p95 | while ingesting p50 / p95 / max | scan p50 | BK-tree p50 | ratio scan/ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in args.query_sizes:
        values = random_hashes(n + args.queries, seed=1)
        extra, values = values[n:], values[:n]
        index: HashIndex[int] = HashIndex()
        for i, v in enumerate(values.tolist()):
            index.add(i, v)
        bk = None
        if n <= 100_000:
            bk = BKTree()
            for i, v in enumerate(values.tolist()):
                bk.add(i, v)
        queries = values[: args.queries].tolist()
        index.search(queries[0], 10)  # the first search builds the tables
        for radius in (4, 10, 16):
            ours = latencies(lambda q, r=radius, ix=index: ix.search(q, r), queries)
            scan = latencies(lambda q, r=radius, v=values: hamming.within(q, v, r), queries)
            tree = latencies(lambda q, r=radius, t=bk: t.search(q, r), queries) if bk is not None else None
            ingest = []
            if radius == 10:
                for k, q in enumerate(queries):
                    t0 = time.perf_counter()
                    index.add(n + k, int(extra[k]))
                    index.search(q, radius)
                    ingest.append(time.perf_counter() - t0)
            p = lambda xs, f: float(np.percentile(xs, f)) if xs else None  # noqa: E731
            ing = f"{fmt_s(p(ingest, 50))} / {fmt_s(p(ingest, 95))} / {fmt_s(max(ingest))}" if ingest else "-"
            rows.append(
                f"| {n:,} | {radius} | {fmt_s(p(ours, 50))} | {fmt_s(p(ours, 95))} | {ing} | {fmt_s(p(scan, 50))} "
                f"| {fmt_s(p(tree, 50) if tree else None)} | {fmt_ratio(p(scan, 50), p(ours, 50))} |"
            )
            log(rows[-1])
    return rows


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the reference's pool workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one call."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - t0, cpu_seconds() - c0


def fit_n2(s1: int, t1: float, s2: int, t2: float) -> tuple[float, float]:
    """``(c, a)`` of ``t = c + a n^2`` through two points (no fixed part when the fit is noisy)."""
    a = (t2 - t1) / (s2 * s2 - s1 * s1)
    c = t1 - a * s1 * s1
    return (c, a) if a > 0 and c >= 0 else (0.0, t2 / (s2 * s2))


def map_digest(result: dict) -> str:
    """sha256 of a duplicate map's JSON (key order and value order included)."""
    return hashlib.sha256(json.dumps(result).encode()).hexdigest()


def child_reference(n: int) -> None:
    """In a child process (run nice'd): the reference's find_duplicates on the table-3 hashes of
    size n; print JSON with wall and CPU seconds (its pool workers included) and the map's digest."""
    from imagededup.methods import PHash as RefPHash

    quiet_reference()
    m = synthetic_hashes(n, seed=3)
    ref = RefPHash(verbose=False)
    out: dict = {}
    wall, cpu = timed(lambda: out.setdefault("r", ref.find_duplicates(encoding_map=m, max_distance_threshold=10)))
    print(json.dumps({"wall": wall, "cpu": cpu, "digest": map_digest(out["r"]), "load": os.getloadavg()}))


def reference_model(args) -> tuple[list[str], Any]:
    """The reference timed at two small sizes and fitted with ``t = c + a n^2``: the rows that
    describe it and ``f(n) -> (wall, cpu)``."""
    from imagededup.methods import PHash as RefPHash

    from dedupd.methods import PHash

    quiet_reference()
    ref_t = []
    for s in args.ref_sizes:
        m = synthetic_hashes(s, seed=2)
        ref = RefPHash(verbose=False)
        wall, cpu = timed(lambda m=m, ref=ref: ref.find_duplicates(encoding_map=m, max_distance_threshold=10))
        ours_small = PHash(verbose=False).find_duplicates(encoding_map=m, max_distance_threshold=10)
        same = ours_small == ref.find_duplicates(encoding_map=m, max_distance_threshold=10)
        ref_t.append((s, wall, cpu, same))
        log(f"reference find_duplicates at {s:,}: {fmt_s(wall)} wall, {fmt_s(cpu)} CPU; ours identical: {same}")
    (s1, w1, c1, _), (s2, w2, c2, _) = ref_t
    cw, aw = fit_n2(s1, w1, s2, w2)
    cc, ac = fit_n2(s1, c1, s2, c2)
    rows = [
        f"reference model (its brute force compares every query with every hash): wall = {cw:.2f} s + "
        f"{aw * 1e9:.2f} ns x n^2, CPU (with its pool workers) = {cc:.2f} s + {ac * 1e9:.2f} ns x n^2, fitted at "
        f"{s1:,} and {s2:,} hashes ({fmt_s(w1)} / {fmt_s(w2)} wall); our map identical to the reference's "
        f"there: {all(x for *_, x in ref_t)}",
        "",
    ]
    return rows, lambda n: (cw + aw * n * n, cc + ac * n * n)


def table_reference(args) -> list[str]:
    """Ours with the numpy join (what a process that has not loaded numba runs below ~130k
    hashes), the one-time load of the compiled join, ours with it, against the reference:
    measured once per size in a nice'd child (``--ref-full``), else extrapolated."""
    from unittest import mock

    from dedupd.core import hamming, mih
    from dedupd.core.hashes import hexes_to_array
    from dedupd.methods import PHash

    rows: list[str] = []
    model = None
    if not args.ref_full:
        rows, model = reference_model(args)

    def ours(m: dict, compiled: bool) -> tuple[float, float, dict]:
        keep: dict = {}
        with mock.patch.object(mih, "use_compiled", lambda n, plan: compiled):
            runs = [timed(lambda: keep.__setitem__("r", PHash(verbose=False).find_duplicates(
                encoding_map=m, max_distance_threshold=10))) for _ in range(args.repeats)]
        return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs), keep["r"]

    maps = {n: synthetic_hashes(n, seed=3) for n in args.lib_sizes}
    numpy_runs = {n: ours(maps[n], False) for n in args.lib_sizes}
    load_wall, load_cpu = timed(mih.compiled_available)
    loaded = (f"loaded in {fmt_s(load_wall)} wall / {fmt_s(load_cpu)} CPU (once per process: numba's import "
              "and its on-disk cache)") if mih.compiled_available() else mih.compiled_error()
    rows += [
        f"compiled join: {loaded}; "
        f"ours = median of {args.repeats} calls; reference = "
        f"{'one call per size in a nice -n 10 child' if args.ref_full else 'extrapolated'}",
        "",
        "| n | reference wall / CPU | dedupd, numpy join: wall / CPU | ratio wall / CPU "
        "| dedupd, compiled join: wall / CPU | ratio wall / CPU | same map as the reference | pairs = scan |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in args.lib_sizes:
        m = maps[n]
        nw, nc, nres = numpy_runs[n]
        cw, cc, cres = ours(m, True) if mih.compiled_available() else (None, None, nres)
        values = hexes_to_array(m.values())
        got = hamming.all_pairs(values, 10)
        want = sorted(t for part in hamming.scan_pairs(values, 10) for t in zip(*(x.tolist() for x in part)))
        same_scan = list(zip(*(x.tolist() for x in got))) == want and cres == nres
        log(f"dedupd at {n:,}: numpy join {fmt_s(nw)} wall / {fmt_s(nc)} CPU, compiled join {fmt_s(cw)} wall / "
            f"{fmt_s(cc)} CPU; pairs = scan: {same_scan}; load average {os.getloadavg()}")
        if args.ref_full:
            cmd = ["nice", "-n", "10", sys.executable, __file__, "--child-ref", str(n)]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            rw, rc, same_ref = r["wall"], r["cpu"], str(r["digest"] == map_digest(nres))
            log(f"reference at {n:,}: load average during its run {r['load']}")
        else:
            (rw, rc), same_ref = model(n), "(extrapolated)"
        rows.append(
            f"| {n:,} | {fmt_s(rw)} / {fmt_s(rc)} | {fmt_s(nw)} / {fmt_s(nc)} | {fmt_ratio(rw, nw)} / "
            f"{fmt_ratio(rc, nc)} | {fmt_s(cw)} / {fmt_s(cc)} | {fmt_ratio(rw, cw)} / {fmt_ratio(rc, cc)} "
            f"| {same_ref} | {same_scan} |"
        )
        log(rows[-1])
    return rows


def child_million(n: int) -> None:
    """In a child process: find_duplicates on n hashes; print JSON with time and a spot check."""
    import resource

    from dedupd.core import hamming
    from dedupd.core.hashes import hexes_to_array
    from dedupd.methods import PHash

    m = synthetic_hashes(n, seed=4)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    res = PHash(verbose=False).find_duplicates(encoding_map=m, max_distance_threshold=10, scores=True)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    # spot check: the rows of 2,000 random names against a scan of all n
    names = list(m)
    values = hexes_to_array(m.values())
    rng = random.Random(0)
    ok = True
    for k in rng.sample(range(n), 2000):
        idx, dist = hamming.within(int(values[k]), values, 10)
        want = sorted((names[i], int(d)) for i, d in zip(idx.tolist(), dist.tolist()) if i != k)
        ok &= sorted(res[names[k]]) == want
    with open("/proc/self/status") as fh:  # this process image's own high-water mark
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": elapsed, "pairs": sum(len(v) for v in res.values()) // 2, "spot_ok": ok,
                      "input_rss_mb": base / 1024, "hwm_mb": hwm / 1024, "cpu": cpu}))


def table_million(args) -> list[str]:
    import resource

    cmd = [sys.executable, __file__, "--child-million", str(args.million)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    r = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [
        "| n | find_duplicates (threshold 10, scores): wall / CPU | peak RSS: getrusage children / child's VmHWM "
        "| RSS before the search (input dict) | pairs | 2,000 rows = scan |",
        "|---|---|---|---|---|---|",
        f"| {args.million:,} | {fmt_s(r['seconds'])} / {fmt_s(r['cpu'])} | {peak:,.0f} MB / {r['hwm_mb']:,.0f} MB "
        f"| {r['input_rss_mb']:,.0f} MB | {r['pairs']:,} | {r['spot_ok']} |",
    ]
    log(rows[-1])
    return rows


def group_skew(values: np.ndarray, shift: int, width: int) -> str:
    from dedupd.core import mih

    counts = np.bincount(mih.substrings(values, shift, width), minlength=1 << width)
    counts = counts[counts > 0]
    return f"{counts.max()} / {counts.mean():.2f}"


def table_skew(real: np.ndarray, n: int) -> list[str]:
    """How far real photo hashes are from uniform bits, and what that does to MIH groups."""
    from dedupd.core import mih

    ones = np.array([((real >> np.uint64(b)) & np.uint64(1)).mean() for b in range(64)])
    rows = [
        f"real photo phashes: {len(np.unique(real))} distinct of {len(real)}; share of 1s per bit: "
        f"min {ones.min():.2f}, median {np.median(ones):.2f}, max {ones.max():.2f}",
        "",
        f"| substring bits | clustered {n:,}: largest group / mean | random {n:,}: largest / mean |",
        "|---|---|---|",
    ]
    clus, rnd = clustered_hashes(n, real), random_hashes(n, seed=5)
    for shift, width in mih.make_plan(4, 0).ranges:
        rows.append(f"| {shift}..{shift + width - 1} | {group_skew(clus, shift, width)} | {group_skew(rnd, shift, width)} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--million", type=int, default=1_000_000, help="size of the big all-pairs run")
    ap.add_argument("--only", default="12345", help="tables to run (digits)")
    ap.add_argument("--ref-full", action="store_true",
                    help="table 3: time the reference at the library sizes (minutes, nice'd) instead of extrapolating")
    ap.add_argument("--lib-sizes", dest="lib_sizes_arg", help="table 3 sizes, comma-separated (default 30000,50000; --quick: 5000)")
    ap.add_argument("--child-million", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-ref", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_million:
        child_million(args.child_million)
        return 0
    if args.child_ref:
        child_reference(args.child_ref)
        return 0
    args.pair_sizes = (2_000, 10_000) if args.quick else (10_000, 100_000)
    args.radii = (0, 10, 16) if args.quick else RADII
    args.query_sizes = (10_000,) if args.quick else (10_000, 100_000, 1_000_000)
    args.queries = 50 if args.quick else 300
    args.ref_sizes = (500, 1_000) if args.quick else (2_000, 4_000)
    args.lib_sizes = (5_000,) if args.quick else (30_000, 50_000)
    if args.lib_sizes_arg:
        args.lib_sizes = tuple(int(x) for x in args.lib_sizes_arg.split(","))
    if args.quick:
        args.repeats, args.million = 1, min(args.million, 50_000)

    out: list[str] = []
    real = real_hashes() if set(args.only) & set("15") else np.zeros(1, dtype=np.uint64)
    for key, title, fn in (  # the 1M child first: its peak RSS must not inherit ours
        ("4", "Library find_duplicates at scale (child process)", lambda: table_million(args)),
        ("1", "All pairs within a radius", lambda: table_all_pairs(args, real)),
        ("2", "One query against n indexed hashes (random, 30 % near copies)", lambda: table_queries(args)),
        ("3", "Library find_duplicates vs the reference (threshold 10)", lambda: table_reference(args)),
        ("5", "MIH group skew, 16-bit substrings", lambda: table_skew(real, args.pair_sizes[-1])),
    ):
        if key in args.only:
            out += [f"### {title}", "", *fn(), ""]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

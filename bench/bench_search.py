#!/usr/bin/env python
"""Hamming search inside dedupd: vectorised popcount scan vs BK-tree.

Two jobs, on the synthetic clustered 64-bit hashes of ``bench_library.py`` (70 % random
originals, 30 % copies with 1-6 bits flipped):

* all pairs within a radius (``find_duplicates``): ``dedupd.core.hamming.all_pairs`` vs the
  incremental BK-tree of ``find_duplicates(search_method="bktree")``;
* one query against n hashes (the daemon's job for each new file):
  ``dedupd.core.hashindex.HashIndex.search`` vs ``dedupd.core.bktree.BKTree.search``.

This is the measurement behind the choice documented in ``dedupd/core/hamming.py`` and
``dedupd/core/hashindex.py``. Prints a markdown table (median of ``--repeats`` runs).

Usage::

    python bench/bench_search.py            # about 2 min
    python bench/bench_search.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, fmt_s
from bench_library import synthetic_hashes


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from dedupd.core import hamming
    from dedupd.core.bktree import BKTree
    from dedupd.core.hashes import hexes_to_array
    from dedupd.core.hashindex import HashIndex
    from dedupd.methods.hashing import _pairs_bktree

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    pair_sizes = (1_000, 3_000) if args.quick else (1_000, 5_000, 20_000)
    query_sizes = (10_000,) if args.quick else (10_000, 100_000)
    n_queries = 50 if args.quick else 200
    repeats = 1 if args.quick else args.repeats

    rows = [
        "| job | n | radius | numpy popcount scan | BK-tree | ratio BK-tree / scan |",
        "|---|---|---|---|---|---|",
    ]
    for n in pair_sizes:
        values = hexes_to_array(synthetic_hashes(n).values())
        for radius in (4, 10):
            scan = median_time(
                lambda values=values, radius=radius: hamming.all_pairs(values, radius), repeats
            )
            tree = median_time(lambda values=values, radius=radius: _pairs_bktree(values, radius), repeats)
            rows.append(
                f"| all pairs | {n:,} | {radius} | {fmt_s(scan)} | {fmt_s(tree)} | {fmt_ratio(tree, scan)} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    for n in query_sizes:
        values = hexes_to_array(synthetic_hashes(n).values()).tolist()
        index, bk = HashIndex(), BKTree()
        for i, v in enumerate(values):
            index.add(i, v)
            bk.add(i, v)
        queries = values[:n_queries]
        for radius in (4, 10):
            scan = (
                median_time(
                    lambda r=radius, index=index, qs=queries: [index.search(q, r) for q in qs], repeats
                )
                / n_queries
            )
            tree = (
                median_time(lambda r=radius, bk=bk, qs=queries: [bk.search(q, r) for q in qs], repeats)
                / n_queries
            )
            rows.append(
                f"| one query (mean of {n_queries}) | {n:,} | {radius} | {fmt_s(scan)} | {fmt_s(tree)} "
                f"| {fmt_ratio(tree, scan)} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

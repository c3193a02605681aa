#!/usr/bin/env python
"""What the user's decisions cost the group decision (``groups.json``, ``/v1/groups``, quarantine plans).

An index of ``--pairs`` groups (pairs of exact copies plus a near duplicate each, as in the socket
API's cache test) is decided by :func:`dedupd.reports.groups.build_groups` without decisions, with
``--sets`` "not a duplicate" sets and as many pins, and with a reference root holding half of the
files. Prints a markdown table: median of ``--repeats`` runs and the ratio to no decisions.

Usage::

    python bench/bench_decisions.py            # 20k groups, about a minute
    python bench/bench_decisions.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time  # noqa: E402

from dedupd.core.review import Review  # noqa: E402
from dedupd.daemon.config import KeepRule, RootConfig, config_from_mapping  # noqa: E402
from dedupd.daemon.index import FileInfo, MatchIndex, Matching  # noqa: E402
from dedupd.reports.groups import build_groups  # noqa: E402


def index_of(groups: int) -> MatchIndex:
    index = MatchIndex(Matching({"phash": 4}))
    items = []
    for g in range(groups):
        h = (g * 0x9E3779B97F4A7C15) % (1 << 64)
        base = (g + 1).to_bytes(16, "big")
        top = "/ref" if g % 2 else "/r"
        items.append((f"{top}/{g}.jpg", FileInfo(base, 1000, g, 10, 10), {"phash": h}, None))
        items.append((f"/r/{g}-copy.jpg", FileInfo(base, 1000, g, 10, 10), {"phash": h}, None))
        items.append((f"/r/{g}-near.jpg", FileInfo((g + 1 + groups).to_bytes(16, "big"), 900, g, 8, 8),
                      {"phash": h ^ 0b101}, None))
    index.bulk_load(items)
    return index



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=20_000, help="duplicate groups in the index")
    ap.add_argument("--sets", type=int, default=2_000, help="'not a duplicate' sets (and pins)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.sets, args.repeats = 2_000, 200, 3
    index = index_of(args.pairs)
    rules = (KeepRule("largest_pixels"),)
    digest = {p: info.digest for p, info in index.files.items()}
    review = Review(
        distinct=tuple(frozenset({digest[f"/r/{g * 2}.jpg"], digest[f"/r/{g * 2}-near.jpg"]}) for g in range(args.sets)),
        pins=tuple((digest[f"/r/{g * 2}-copy.jpg"], 1.0, f"/r/{g * 2}-copy.jpg") for g in range(args.sets)))
    with tempfile.TemporaryDirectory() as tmp:  # the config wants existing roots; the index's paths are made up
        config = dataclasses.replace(config_from_mapping({"roots": [tmp]}),
                                     roots=(RootConfig("/r"), RootConfig("/ref", True, True)))
        rows = [("no decisions", median_time(lambda: build_groups(index, rules), args.repeats))]
        rows.append((f"{args.sets} distinct sets + {args.sets} pins",
                     median_time(lambda: build_groups(index, rules, review), args.repeats)))
        rows.append(("reference root (half the groups)",
                     median_time(lambda: build_groups(index, rules, None, config), args.repeats)))
        rows.append(("both", median_time(lambda: build_groups(index, rules, review, config), args.repeats)))
    base = rows[0][1]
    print(f"build_groups on {args.pairs} groups ({3 * args.pairs} files), median of {args.repeats}\n")
    print("| decisions | seconds | ratio to none |\n|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()

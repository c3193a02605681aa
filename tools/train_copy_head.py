"""Train dedupd's copy-detection head on top of the offline EfficientNet-Lite0 backbone (CPU only).

ImageNet features say *what* is in a picture; two photos of the same kind of scene score almost as
high as a photo and its edited copy. This script teaches a small projection head (two linear
layers on the frozen 1280-d pooled features, 256-d output) that views derived from the same photo
belong together and views of different photos do not:

1. Split the corpus's base photos: every fifth base (``b0000``, ``b0005``...) is held out for
   evaluation (``bench/copy_embedding.py``) and never seen here.
2. Derive ``--views`` random edits of each training base: zoom up to 150 % plus a random crop,
   border crops, squashing, flips, 90° turns, small rotations, colour/lighting/contrast/saturation
   changes, grayscale, salt-and-pepper and gaussian noise, text overlays, downscaling, JPEG
   recompression (seeded: the same seed gives the same views).
3. Encode every view once with the frozen backbone (the slow part: ~30 ms a view on one core).
4. Train the head with a supervised contrastive loss (all views of one base are positives) on the
   cached features: seconds.
5. Choose the recommended cosine threshold on the training side: the lowest with pair precision
   >= 0.995 between same-base and different-base views of a held-back slice of the training bases.
6. Write the head as a NumPy ``.npz`` (no pickle) with the training record in ``meta``.

Usage (from the repository root; about 5-10 minutes on two cores)::

    python tools/train_copy_head.py --base ../shared/corpus/base

The output replaces ``dedupd/cnn_models/weights/efficientnet_lite0_copy.npz``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from dedupd.cnn_models import load_model
from dedupd.cnn_models.copy_head import HEAD_FILE, CopyHead
from dedupd.cnn_models.runtime import FeatureExtractor


def is_held_out(path: Path) -> bool:
    """Evaluation bases (never trained on): every fifth base by number."""
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    return bool(digits) and int(digits) % 5 == 0


def base_photos(base_dir: Path) -> list[Path]:
    return sorted(p for p in base_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})


def _zoom_crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    s = rng.uniform(1.0, 1.5)
    cw, ch = max(8, int(w / s)), max(8, int(h / s))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)


def _border_crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    f = rng.uniform(0.02, 0.15, size=4)
    return img.crop((int(w * f[0]), int(h * f[1]), w - int(w * f[2]), h - int(h * f[3])))


def _salt_pepper(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = np.array(img)
    mask = rng.random(a.shape[:2])
    amount = rng.uniform(0.002, 0.03)
    a[mask < amount / 2] = 0
    a[mask > 1 - amount / 2] = 255
    return Image.fromarray(a)


def _gaussian(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(2, 10), size=np.asarray(img).shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _text(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    x, y = int(rng.integers(0, max(1, w // 2))), int(rng.integers(0, max(1, h - 20)))
    draw.text((x, y), f"(c) {int(rng.integers(1990, 2030))} photo", fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return out


def _jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(20, 96)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One random edit of ``img`` (RGB): the families a copy goes through on its way to a disk."""
    if rng.random() < 0.6:
        img = _zoom_crop(img, rng)
    if rng.random() < 0.25:
        img = _border_crop(img, rng)
    if rng.random() < 0.1:
        side = min(img.size)
        img = img.resize((side, side), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    if rng.random() < 0.15:
        img = ImageOps.flip(img)
    if rng.random() < 0.15:
        img = img.rotate(90 * int(rng.integers(1, 4)), expand=True)
    if rng.random() < 0.15:
        img = img.rotate(float(rng.uniform(-25, 25)), resample=Image.Resampling.BILINEAR)
    for enhancer, lo, hi in ((ImageEnhance.Brightness, 0.6, 1.4), (ImageEnhance.Contrast, 0.6, 1.4),
                             (ImageEnhance.Color, 0.0, 1.6)):
        if rng.random() < 0.5:
            img = enhancer(img).enhance(float(rng.uniform(lo, hi)))
    if rng.random() < 0.15:
        img = ImageOps.grayscale(img).convert("RGB")
    if rng.random() < 0.3:
        img = _salt_pepper(img, rng)
    if rng.random() < 0.2:
        img = _gaussian(img, rng)
    if rng.random() < 0.15:
        img = _text(img, rng)
    if rng.random() < 0.4:
        f = rng.uniform(0.25, 0.9)
        img = img.resize((max(16, int(img.width * f)), max(16, int(img.height * f))), Image.Resampling.BILINEAR)
    if rng.random() < 0.6:
        img = _jpeg(img, rng)
    return img


def encode_views(paths: list[Path], views: int, seed: int, extractor: FeatureExtractor) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features of each base and ``views`` edits of it: (features, base label per row)."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for label, path in enumerate(paths):
        with Image.open(path) as im:
            original = im.convert("RGB")
        original.thumbnail((512, 512))  # the model sees 224 x 224; edits on a 512-px copy cost less
        images = [original] + [augment(original, rng) for _ in range(views)]
        feats.append(extractor.encode_pil(images))
        labels += [label] * len(images)
        if label % 20 == 0:
            print(f"  encoded {label + 1}/{len(paths)} bases", flush=True)
    return np.concatenate(feats), np.asarray(labels)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss: every other view of the same base is a positive."""
    logits = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool)
    logits = logits.masked_fill(eye, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    return -(log_prob * pos).sum(1).div(pos.sum(1).clamp(min=1)).mean()


def train_head(feats: np.ndarray, labels: np.ndarray, *, steps: int, seed: int, temperature: float,
               bases_per_batch: int, views_per_base: int, hidden: int, dim: int) -> CopyHead:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = feats.mean(0), feats.std(0) + 1e-6
    head = CopyHead(feats.shape[1], hidden, dim, mean=mean, std=std)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x_all = torch.from_numpy(feats.astype(np.float32))
    by_base = [np.flatnonzero(labels == b) for b in np.unique(labels)]
    head.train()
    for step in range(steps):
        chosen = rng.choice(len(by_base), size=min(bases_per_batch, len(by_base)), replace=False)
        rows = np.concatenate([rng.choice(by_base[b], size=views_per_base, replace=False) for b in chosen])
        z = head(x_all[rows])
        loss = supcon_loss(z, torch.from_numpy(labels[rows]), temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {loss.item():.4f}", flush=True)
    return head.eval().quantize_()


def precise_threshold(emb: np.ndarray, labels: np.ndarray, target: float = 0.995) -> tuple[float, float, float]:
    """The lowest cosine threshold whose pair precision (same base = duplicate) is at least ``target``.

    Precision-led rather than best-F1: the slice has one true pair in about twenty, a real folder
    one in thousands, so a best-F1 threshold chosen here would be too low for real folders.
    Returns (threshold, precision, recall).
    """
    sims = emb @ emb.T
    iu = np.triu_indices(len(emb), 1)
    s, same = sims[iu], (labels[:, None] == labels[None, :])[iu]
    order = np.argsort(-s)
    tp = np.cumsum(same[order])
    precision, recall = tp / np.arange(1, len(order) + 1), tp / max(1, same.sum())
    ok = np.flatnonzero(precision >= target)
    i = int(ok[-1]) if len(ok) else 0
    return float(s[order][i]), float(precision[i]), float(recall[i])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, default=REPO.parent / "shared" / "corpus" / "base", help="base photos")
    ap.add_argument("--out", type=Path, default=HEAD_FILE, help="where to write the head (.npz)")
    ap.add_argument("--views", type=int, default=16, help="random edits per training base")
    ap.add_argument("--steps", type=int, default=1500, help="optimiser steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--max-bases", type=int, default=0, help="use at most this many training bases (0: all; for a quick try)")
    ap.add_argument("--cache", type=Path, default=None, help="reuse/write the backbone features here (.npz)")
    args = ap.parse_args(argv)

    started = time.monotonic()
    train = [p for p in base_photos(args.base) if not is_held_out(p)]
    if args.max_bases:
        train = train[: args.max_bases]
    if len(train) < 8:
        raise SystemExit(f"{args.base}: need at least 8 training photos, found {len(train)}")
    # a slice of the training bases is kept back from the optimiser to choose the threshold
    calib = train[::10]
    fit = [p for p in train if p not in calib]
    print(f"{len(fit)} bases to fit, {len(calib)} to choose the threshold, {args.views} views each")

    if args.cache and args.cache.is_file():
        cached = np.load(args.cache, allow_pickle=False)
        feats, labels, cfeats, clabels = cached["feats"], cached["labels"], cached["cfeats"], cached["clabels"]
    else:
        extractor = FeatureExtractor(load_model("efficientnet_lite0"), device="cpu", batch_size=32)
        feats, labels = encode_views(fit, args.views, args.seed, extractor)
        cfeats, clabels = encode_views(calib, args.views, args.seed + 1, extractor)
        if args.cache:
            np.savez(args.cache, feats=feats, labels=labels, cfeats=cfeats, clabels=clabels)
    encoded = time.monotonic()
    torch.set_num_threads(1)  # small matrices: one thread is fastest (threads spin against each other)

    head = train_head(feats, labels, steps=args.steps, seed=args.seed, temperature=args.temperature,
                      bases_per_batch=64, views_per_base=min(4, args.views + 1), hidden=args.hidden, dim=args.dim)
    with torch.no_grad():
        cemb = head(torch.from_numpy(cfeats.astype(np.float32))).numpy()
    threshold, p, r = precise_threshold(cemb, clabels)
    plain = cfeats / np.linalg.norm(cfeats, axis=1, keepdims=True)
    pt, pp, pr = precise_threshold(plain, clabels)
    print(f"threshold-choosing slice: head  t={threshold:.3f} precision {p:.3f} recall {r:.3f}")
    print(f"                          plain t={pt:.3f} precision {pp:.3f} recall {pr:.3f}")
    meta = {
        "backbone": "efficientnet_lite0", "trained_bases": len(fit), "threshold_bases": len(calib),
        "held_out_rule": "base number % 5 == 0", "views_per_base": args.views, "steps": args.steps,
        "seed": args.seed, "temperature": args.temperature, "hidden": args.hidden, "dim": args.dim,
        "threshold": round(threshold, 3), "threshold_rule": "lowest with pair precision >= 0.995 on the slice",
        "slice_recall": round(r, 4), "plain_backbone_threshold": round(pt, 3), "plain_backbone_slice_recall": round(pr, 4),
        "encode_minutes": round((encoded - started) / 60, 2),
        "total_minutes": round((time.monotonic() - started) / 60, 2),
        "script": "tools/train_copy_head.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    head.save(args.out, meta)
    print(json.dumps(meta, indent=1))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``dedupd calibrate DIR --ground-truth FILE``: choose thresholds from a labelled sample.

The ground truth is imagededup's format (``{"name": ["duplicate name", ...], ...}``, names relative
to ``DIR``; ``make_corpus.py``'s ``ground_truth.json`` is one). Every file is decoded once and
hashed with each method (plain, and with the ``crop`` / ``flip`` variant options of
:mod:`dedupd.core.variants`); then, for every threshold, the retrieved *pairs* (a pair is a
duplicate when its distance is within the threshold, as the daemon's rule
:func:`dedupd.core.policy.pair_evidence` decides it) are compared with the labelled pairs:

* precision = true retrieved pairs / retrieved pairs, recall = true retrieved pairs / labelled pairs;
* the recommended ``threshold`` is the largest one whose precision is at least ``--precision``
  (default 0.99), and ``strong`` the largest whose precision is at least ``--strong-precision``
  (default 0.999): the cascade's bands (strong matches may be quarantined, weak ones are reported).

The sweep itself (:func:`sweep`) is pure numpy over hash arrays, so ``bench/quality.py`` reuses it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from dedupd.core import variants as hash_variants

METHODS: tuple[str, ...] = ("phash", "dhash", "ahash", "whash")
#: option sets swept per method: plain, crop variants, flip/rotation variants
OPTION_SETS: tuple[tuple[str, ...], ...] = ((), ("crop",), ("dihedral",))
THRESHOLDS: tuple[int, ...] = tuple(range(0, 21))
_BLOCK = 1 << 22  # elements of one distance block (32 MB of uint64)


@dataclass(frozen=True)
class Point:
    """Precision/recall of one method, option set and threshold on the labelled pairs."""

    method: str
    options: tuple[str, ...]
    threshold: int
    retrieved: int
    true_retrieved: int
    labelled: int

    @property
    def precision(self) -> float:
        return self.true_retrieved / self.retrieved if self.retrieved else 1.0

    @property
    def recall(self) -> float:
        return self.true_retrieved / self.labelled if self.labelled else 1.0


# -- pure part --------------------------------------------------------------------------------------------


def pair_distances(columns: Mapping[str, np.ndarray], method: str, options: Iterable[str], radius: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` whose distance under ``method`` with ``options`` is ``<= radius``.

    ``columns`` maps each hash key (``"phash"``, ``"phash@c90"``, ...) to a uint64 array over the
    same files. The distance is the smallest over :func:`dedupd.core.variants.comparisons`, as
    the daemon computes it. Returns ``(i, j, distance)`` int64 arrays.
    """
    comps = hash_variants.comparisons(method, tuple(options))
    n = len(columns[method])
    rows = max(1, _BLOCK // max(1, n))
    out_i, out_j, out_d = [], [], []
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        block = None
        for ka, kb in comps:
            d = np.bitwise_count(columns[ka][start:stop, None] ^ columns[kb][None, :])
            block = d if block is None else np.minimum(block, d)
        assert block is not None
        mask = (block <= radius) & (np.arange(n)[None, :] > np.arange(start, stop)[:, None])
        r, c = np.nonzero(mask)
        out_i.append(r + start)
        out_j.append(c)
        out_d.append(block[r, c])
    cat = [np.concatenate(x).astype(np.int64) if x else np.empty(0, np.int64) for x in (out_i, out_j, out_d)]
    return cat[0], cat[1], cat[2]


def labelled_pairs(names: Sequence[str], ground_truth: Mapping[str, Iterable[str]]) -> set[tuple[int, int]]:
    """The labelled duplicate pairs as index pairs ``(i, j)``, ``i < j`` (names not in ``names`` skipped)."""
    at = {n: i for i, n in enumerate(names)}
    out = set()
    for a, dups in ground_truth.items():
        for b in dups:
            if a in at and b in at and a != b:
                i, j = at[a], at[b]
                out.add((min(i, j), max(i, j)))
    return out


def sweep(columns: Mapping[str, np.ndarray], truth: set[tuple[int, int]], method: str,
          options: tuple[str, ...] = (), thresholds: Sequence[int] = THRESHOLDS) -> list[Point]:
    """Precision/recall of ``method`` with ``options`` at each threshold."""
    i, j, d = pair_distances(columns, method, options, max(thresholds))
    good = np.array([(a, b) in truth for a, b in zip(i.tolist(), j.tolist())], dtype=bool) if len(i) else \
        np.zeros(0, dtype=bool)
    return [Point(method, options, t, int((d <= t).sum()), int(((d <= t) & good).sum()), len(truth))
            for t in thresholds]


def recommend(points: Sequence[Point], precision: float) -> Point | None:
    """The loosest threshold whose precision is at least ``precision`` (None: not even 0 is)."""
    ok = [p for p in points if p.precision >= precision]
    return max(ok, key=lambda p: p.threshold) if ok else None


def config_lines(method: str, options: tuple[str, ...], threshold: int, strong: int | None) -> str:
    """A ``methods:`` entry of the daemon config for these choices."""
    parts = [f"threshold: {threshold}"]
    if strong is not None:
        parts.append(f"strong: {min(strong, threshold)}")
    parts += [f"{key}: true" for key, opt in (("crop", "crop"), ("flip", "dihedral")) if opt in options]
    return f"  {method}: {{{', '.join(parts)}}}"


# -- shell -------------------------------------------------------------------------------------------------


def _encode_one(args: tuple[str, tuple[str, ...], bool]) -> dict[str, int] | None:
    from dedupd.encoding import encode_file
    from dedupd.errors import ImageDecodeError

    path, keys, exif = args
    try:
        return encode_file(path, keys, exif_transpose=exif).hashes
    except ImageDecodeError:
        return None


def encode_dir(image_dir: Path, keys: Sequence[str], *, workers: int = 1, exif_transpose: bool = False
               ) -> tuple[list[str], dict[str, np.ndarray], list[str]]:
    """Decode every file under ``image_dir`` once: (names, ``{key: uint64 array}``, undecodable names)."""
    from dedupd.files import list_files, relative_names
    from dedupd.parallel import pmap

    files = list_files(image_dir, recursive=True)
    names = relative_names(image_dir, files)
    res = pmap(_encode_one, [(str(f), tuple(keys), exif_transpose) for f in files], workers)
    good = [k for k, r in enumerate(res) if r is not None]
    columns = {key: np.array([res[k][key] for k in good], dtype=np.uint64) for key in keys}  # type: ignore[index]
    return [names[k] for k in good], columns, [names[k] for k, r in enumerate(res) if r is None]


def run(image_dir: str, ground_truth: str, *, methods: Sequence[str] = ("phash", "dhash"),
        precision: float = 0.99, strong_precision: float = 0.999, workers: int = 1,
        exif_transpose: bool = True, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Sweep, print the table and the recommended config; returns the numbers (for ``--json``).

    Raises:
        ValueError: a bad directory, ground-truth file or method (the message names it).
    """
    root = Path(image_dir)
    if not root.is_dir():
        raise ValueError(f"{image_dir} is not a directory: give the folder of the labelled sample")
    try:
        gt = json.loads(Path(ground_truth).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the ground truth {ground_truth}: {exc}; expected imagededup's format "
                         '{"name": ["duplicate name", ...]} with names relative to the folder') from None
    if not isinstance(gt, dict) or not all(isinstance(v, list) for v in gt.values()):
        raise ValueError(f"{ground_truth}: expected a JSON object mapping each file name to a list of its "
                         "duplicates (imagededup's ground-truth format)")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    keys = [k for m in methods for k in (m, *hash_variants.variant_keys(m, ("crop", "dihedral")))]
    names, columns, failed = encode_dir(root, keys, workers=workers, exif_transpose=exif_transpose)
    missing = sorted(set(gt) - set(names) - set(failed))
    truth = labelled_pairs(names, gt)
    print(f"{len(names)} files decoded ({len(failed)} undecodable), {len(truth)} labelled duplicate pairs"
          + (f"; {len(missing)} names in the ground truth are not in {image_dir}" if missing else ""), file=out)
    result: dict[str, Any] = {"files": len(names), "labelled_pairs": len(truth), "methods": {}}
    best_lines = []
    for m in methods:
        for opts in OPTION_SETS:
            points = sweep(columns, truth, m, opts)
            label = m + "".join(f"+{'flip' if o == 'dihedral' else o}" for o in opts)
            print(f"\n{label}: threshold  precision  recall  retrieved pairs", file=out)
            for p in points:
                print(f"  {p.threshold:>3}  {p.precision:.4f}  {p.recall:.4f}  {p.retrieved}", file=out)
            thr, strong = recommend(points, precision), recommend(points, strong_precision)
            entry = {"points": [p.__dict__ | {"precision": p.precision, "recall": p.recall} for p in points],
                     "threshold": thr and thr.threshold, "strong": strong and strong.threshold}
            result["methods"][label] = entry
            if thr is not None:
                line = config_lines(m, opts, thr.threshold, strong.threshold if strong else None)
                best_lines.append((thr.recall, line, label, thr, strong))
                print(f"  recommended: threshold {thr.threshold} (precision {thr.precision:.4f}, recall "
                      f"{thr.recall:.4f})" + (f", strong {min(strong.threshold, thr.threshold)} (precision "
                      f"{strong.precision:.4f}, recall {strong.recall:.4f})" if strong else
                      ", strong: none reaches the strong precision"), file=out)
            else:
                print(f"  no threshold reaches precision {precision}", file=out)
    if best_lines:
        best = max(best_lines, key=lambda x: x[0])
        result["recommended"] = {"label": best[2], "line": best[1]}
        print(f"\nRecommended config (highest recall at precision >= {precision}: {best[2]}):\nmethods:\n{best[1]}",
              file=out)
    else:
        print(f"\nNo method reaches precision {precision} on this sample: label more pairs or review matches.",
              file=out)
    return result


def main_args(ns: Any) -> int:
    """Entry point for ``dedupd calibrate`` (argparse namespace from :mod:`dedupd.cli`)."""
    try:
        res = run(ns.dir, ns.ground_truth, methods=ns.methods.split(","), precision=ns.precision,
                  strong_precision=ns.strong_precision, workers=ns.workers, exif_transpose=not ns.no_exif)
    except ValueError as exc:
        print(f"dedupd calibrate: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        tmp = f"{ns.json}.tmp"
        with open(tmp, "w") as fh:
            json.dump(res, fh, indent=1)
        os.replace(tmp, ns.json)
    return 0

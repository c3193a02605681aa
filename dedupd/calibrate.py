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


def pair_distances(columns: Mapping[str, np.ndarray], comps: Sequence[tuple[str, str]], radius: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` whose smallest distance over the comparisons ``comps`` (pairs of hash
    keys, as :func:`dedupd.core.variants.comparisons` lists them) is ``<= radius``.

    ``columns`` maps each hash key (``"phash"``, ``"phash@c90"``, ...) to a uint64 array over the
    same files. Returns ``(i, j, distance)`` int64 arrays.
    """
    n = len(columns[comps[0][0]])
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


def family_pairs(columns: Mapping[str, np.ndarray], method: str, option: str, radius: int) -> dict[tuple[int, int], int]:
    """``{(i, j): distance}`` of the pairs within ``radius`` through one comparison family of
    ``method`` (``option`` ``""``: the plain hashes; else ``"crop"`` or ``"dihedral"``)."""
    comps = [(method, method)] if not option else list(hash_variants.option_comparisons(method, option))
    i, j, d = pair_distances(columns, comps, radius)
    return dict(zip(zip(i.tolist(), j.tolist()), d.tolist()))


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


def retrieved(fams: Mapping[str, Mapping[tuple[int, int], int]], limits: Mapping[str, int]) -> set[tuple[int, int]]:
    """Pairs retrieved by a method whose comparison families have these max distances."""
    out: set[tuple[int, int]] = set()
    for fam, limit in limits.items():
        out.update(k for k, d in fams[fam].items() if d <= limit)
    return out


def point(method: str, options: Mapping[str, int], threshold: int, pairs: set[tuple[int, int]],
          truth: set[tuple[int, int]]) -> Point:
    return Point(method, tuple(f"{o}<={v}" for o, v in options.items()), threshold, len(pairs),
                 len(pairs & truth), len(truth))


def recommend(points: Sequence[Point], precision: float) -> Point | None:
    """The loosest threshold whose precision is at least ``precision`` (None: not even 0 is)."""
    ok = [p for p in points if p.precision >= precision]
    return max(ok, key=lambda p: p.threshold) if ok else None


@dataclass(frozen=True)
class Choice:
    """The recommended settings of one method and how they score on the sample."""

    method: str
    threshold: int
    strong: int | None
    options: dict[str, int]
    all: Point
    strong_point: Point | None
    plain: tuple[Point, ...] = ()


def choose(fams: Mapping[str, Mapping[tuple[int, int], int]], truth: set[tuple[int, int]], method: str,
           precision: float, strong_precision: float, thresholds: Sequence[int] = THRESHOLDS,
           out: TextIO | None = None) -> Choice | None:
    """Sweep the plain threshold, then each variant option's limit on top of it; pick the loosest
    settings that keep ``precision`` (and ``strong_precision`` for the strong bound)."""
    plain = [point(method, {}, t, retrieved(fams, {"": t}), truth) for t in thresholds]
    _table(f"{method} (plain hash)", "threshold", plain, out)
    thr = recommend(plain, precision)
    if thr is None:
        return None
    t = thr.threshold
    limits = {"": t}
    for option in (o for o in ("crop", "dihedral") if o in fams):
        base = point(method, {}, t, retrieved(fams, limits), truth)
        pts = [point(method, {option: v}, v, retrieved(fams, {**limits, option: v}), truth) for v in range(t + 1)]
        _table(f"{method} threshold {t} + {_label(option)} hashes", f"{_label(option)} max distance", pts, out)
        best = recommend(pts, precision)
        if best is not None and best.true_retrieved > base.true_retrieved:
            limits[option] = best.threshold
    final = point(method, {o: v for o, v in limits.items() if o}, t, retrieved(fams, limits), truth)
    strong_pts = []
    for s in range(t + 1):
        lim = {o: min(v, s) for o, v in limits.items()}
        strong_pts.append(point(method, {}, s, retrieved(fams, lim), truth))
    _table(f"{method}: strong band (every comparison within the bound)", "strong", strong_pts, out)
    st = recommend(strong_pts, strong_precision)
    return Choice(method, t, st.threshold if st else None, {o: v for o, v in limits.items() if o}, final, st,
                  tuple(plain))


def config_lines(choice: Choice) -> str:
    """The ``methods:`` entry of the daemon config for ``choice``."""
    parts = [f"threshold: {choice.threshold}"]
    if choice.strong is not None:
        parts.append(f"strong: {choice.strong}")
    parts.append(f"crop: {choice.options['crop']}" if "crop" in choice.options else "crop: false")
    if "dihedral" in choice.options:
        parts.append(f"flip: {choice.options['dihedral']}")
    return f"  {choice.method}: {{{', '.join(parts)}}}"


def _label(option: str) -> str:
    return "flip" if option == "dihedral" else option


def _table(title: str, what: str, points: Sequence[Point], out: TextIO | None) -> None:
    if out is None:
        return
    print(f"\n{title}:\n  {what:>20}  precision  recall  retrieved pairs", file=out)
    for p in points:
        print(f"  {p.threshold:>20}  {p.precision:9.4f}  {p.recall:6.4f}  {p.retrieved}", file=out)


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
        options: Sequence[str] = ("crop", "dihedral"), precision: float = 0.99, strong_precision: float = 0.999,
        workers: int = 1, exif_transpose: bool = True, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Sweep, print the tables and the recommended config; returns the numbers (for ``--json``).

    Raises:
        ValueError: a bad directory, ground-truth file, method or option (the message names it).
    """
    root = Path(image_dir)
    if not root.is_dir():
        raise ValueError(f"{image_dir} is not a directory: give the folder of the labelled sample")
    try:
        gt = json.loads(Path(ground_truth).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the ground truth {ground_truth}: {exc}; expected imagededup's format "
                         '{"name": ["duplicate name", ...]} with names relative to the folder') from None
    if not isinstance(gt, dict) or not all(isinstance(v, list) and all(isinstance(n, str) for n in v)
                                           for v in gt.values()):
        raise ValueError(f"{ground_truth}: expected a JSON object mapping each file name to a list of its "
                         "duplicates' file names (imagededup's ground-truth format)")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    keys = [k for m in methods for k in (m, *hash_variants.variant_keys(m, options))]
    names, columns, failed = encode_dir(root, keys, workers=workers, exif_transpose=exif_transpose)
    if not names:
        raise ValueError(f"no decodable image under {image_dir}")
    missing = sorted(set(gt) - set(names) - set(failed))
    truth = labelled_pairs(names, gt)
    if not truth:
        raise ValueError(f"{ground_truth} labels no duplicate pair among the files in {image_dir} ({len(missing)} "
                         "of its names are not there): give the ground truth of this folder, names relative to it")
    print(f"{len(names)} files decoded ({len(failed)} undecodable), {len(truth)} labelled duplicate pairs"
          + (f"; {len(missing)} names of the ground truth are not in {image_dir}" if missing else ""), file=out)
    result: dict[str, Any] = {"files": len(names), "labelled_pairs": len(truth), "methods": {}}
    choices = []
    for m in methods:
        fams = {o: family_pairs(columns, m, o, max(THRESHOLDS)) for o in ("", *options)}
        c = choose(fams, truth, m, precision, strong_precision, out=out)
        if c is None:
            print(f"  {m}: no threshold reaches precision {precision}", file=out)
            result["methods"][m] = None
            continue
        choices.append(c)
        result["methods"][m] = {
            "threshold": c.threshold, "strong": c.strong, "options": c.options, "line": config_lines(c),
            "precision": c.all.precision, "recall": c.all.recall, "retrieved": c.all.retrieved,
            "strong_precision": c.strong_point.precision if c.strong_point else None,
            "strong_recall": c.strong_point.recall if c.strong_point else None,
            "plain": [{"threshold": p.threshold, "precision": p.precision, "recall": p.recall,
                       "retrieved": p.retrieved} for p in c.plain],
        }
    print("\nRecommended (loosest settings with pair precision >= "
          f"{precision}; strong band at >= {strong_precision}):", file=out)
    for c in sorted(choices, key=lambda c: -c.all.recall):
        sp = c.strong_point
        print(f"  {c.method}: precision {c.all.precision:.4f}, recall {c.all.recall:.4f}"
              + (f"; strong precision {sp.precision:.4f}, recall {sp.recall:.4f}" if sp else "; no strong bound"),
              file=out)
    if choices:
        best = max(choices, key=lambda c: c.all.recall)
        result["recommended"] = best.method
        print("\nConfig lines (the method with the highest recall first; add the others for `match: any`):\n"
              "methods:\n" + "\n".join(config_lines(c) for c in sorted(choices, key=lambda c: -c.all.recall)),
              file=out)
    else:
        print(f"\nNo method reaches precision {precision} on this sample: label more pairs or review matches.",
              file=out)
    return result


def _check_writable(path: str) -> None:
    """Refuse a ``--json`` file that cannot be written, before the sweep (raises ValueError)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"--json {path} is a folder; give a file name, e.g. {os.path.join(path, 'calibrate.json')}")
    if not os.path.isdir(folder):
        raise ValueError(f"--json {path}: the folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--json {path}: cannot write in {folder}; check its permissions or choose another path")


def main_args(ns: Any) -> int:
    """Entry point for ``dedupd calibrate`` (argparse namespace from :mod:`dedupd.cli`)."""
    try:
        if ns.json:
            _check_writable(ns.json)
        opts = [{"flip": "dihedral"}.get(o, o) for o in ns.options.split(",") if o]
        bad = [o for o in opts if o not in hash_variants.OPTIONS]
        if bad:
            raise ValueError(f"unknown option(s) {', '.join(bad)} for --options; choose from crop, flip")
        res = run(ns.dir, ns.ground_truth, methods=ns.methods.split(","), options=opts, precision=ns.precision,
                  strong_precision=ns.strong_precision, workers=ns.workers, exif_transpose=not ns.no_exif)
    except ValueError as exc:
        print(f"dedupd calibrate: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        tmp = f"{ns.json}.tmp"
        with open(tmp, "w") as fh:
            json.dump(res, fh, indent=1)
        os.replace(tmp, ns.json)
    return 0

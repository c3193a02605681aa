"""The cascade (exact → hashes with crop/flip variants → CNN) and its confidence bands, measured.

Used by ``bench/quality.py --cascade`` (the part of the quality benchmark that chose the daemon's
defaults). For each *rule* (a daemon config: hash thresholds, variant options, strong bounds, an
optional CNN) it reports, on the corpus generator's transformed and mixed sets and on a
hard-negative set (different framings of the same scene, one of them mirrored: no pair is a
duplicate):

* pair precision / recall of all matches and of the ``strong`` band alone;
* recall / precision per transformation;
* false pairs on the hard negatives; false-positive groups on a 10,000-image mixed set
  (``--big``): connected groups holding at least one pair that is not a duplicate;
* the cost of the variant hashes: bytes per file and encode ms per file.

Pair sets come from :func:`dedupd.calibrate.family_pairs` (vectorised; the same distance rule
as :func:`dedupd.core.policy.pair_evidence`, which ``tests/quality/test_calibrate.py`` checks).
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import log
from PIL import Image

from dedupd import calibrate
from dedupd.core import variants
from dedupd.encoding import encode_file

HASHES = ("phash", "dhash")
EVERYDAY = ("jpeg60", "downscale50", "png", "webp", "brighter20", "lowcontrast20", "watermark", "border5",
            "grayscale", "exif_rotate")
ORDER = ("exact", *EVERYDAY, "noise5", "square", "crop", "hflip", "vflip", "rotate25")
Pair = tuple[int, int]


@dataclass(frozen=True)
class Rule:
    """One configuration: per hash method (threshold, strong bound or None, {option: limit})."""

    label: str
    hashes: Mapping[str, tuple[int, int | None, Mapping[str, int]]]
    cnn: tuple[float, float, float] | None = None  # (threshold, strong bound, confirm)
    exif: bool = True
    banded: bool = True
    note: str = ""
    #: framing check: method → max distance of the crop hashes of the same framing for a plain
    #: match beyond the strong bound (:func:`dedupd.core.policy.framing_distance`)
    agree: Mapping[str, int] = field(default_factory=dict)


RULES: tuple[Rule, ...] = (
    Rule("before: phash ≤ 10 (old default)", {"phash": (10, None, {})}, exif=False, banded=False,
         note="the default before this change: no variants, no bands, EXIF ignored"),
    Rule("default: phash ≤ 10, crop ≤ 2, strong ≤ 4, framing check ≤ 10", {"phash": (10, 4, {"crop": 2})},
         agree={"phash": 10}, note="the daemon's default: a weak match needs its framings to agree"),
    Rule("without the framing check (previous default)", {"phash": (10, 4, {"crop": 2})},
         note="the default before the framing check (EXIF orientation applied)"),
    Rule("framing check ≤ 8", {"phash": (10, 4, {"crop": 2})}, agree={"phash": 8}),
    Rule("default, EXIF ignored", {"phash": (10, 4, {"crop": 2})}, exif=False,
         note="the new default where exif_transpose is off (the EXIF bullet is another change)"),
    Rule("default with strong ≤ 6", {"phash": (10, 6, {"crop": 2})}),
    Rule("default + flip ≤ 2", {"phash": (10, 4, {"crop": 2, "dihedral": 2})}),
    Rule("phash ≤ 8, crop ≤ 2, strong ≤ 4", {"phash": (8, 4, {"crop": 2})}),
    Rule("first tried: phash ≤ 10, crop ≤ 8, strong ≤ 6", {"phash": (10, 6, {"crop": 8})},
         note="crop at 8 was clean on 1,500 files, not on 10,000 small tiles"),
    Rule("dhash ≤ 10, crop ≤ 2, strong ≤ 4", {"dhash": (10, 4, {"crop": 2})}),
    Rule("phash + dhash (any), crop ≤ 2, strong ≤ 4", {"phash": (10, 4, {"crop": 2}), "dhash": (10, 4, {"crop": 2})}),
    Rule("phash + dhash (any), crop ≤ 2, strong ≤ 4, framing checks ≤ 10",
         {"phash": (10, 4, {"crop": 2}), "dhash": (10, 4, {"crop": 2})}, agree={"phash": 10, "dhash": 10}),
    Rule("cascade: default + CNN ≥ 0.9 (strong ≥ 0.99, confirms ≥ 0.97)", {"phash": (10, 4, {"crop": 2})},
         cnn=(0.9, 0.99, 0.97)),
    Rule("cascade as first tried: CNN strong ≥ 0.97, confirms ≥ 0.9", {"phash": (10, 4, {"crop": 2})},
         cnn=(0.9, 0.97, 0.9)),
    Rule("cascade + flip", {"phash": (10, 4, {"crop": 2, "dihedral": 2})}, cnn=(0.9, 0.99, 0.97)),
)


@dataclass
class Encoded:
    """Hash columns (and optional CNN vectors) of one dataset, with its labels."""

    names: list[str]
    columns: dict[str, np.ndarray]
    no_exif: dict[str, np.ndarray]  # plain hashes decoded ignoring EXIF orientation
    truth: set[Pair]
    transforms: dict[str, dict]
    vectors: np.ndarray | None = None
    fams: dict[tuple[str, str], dict[Pair, int]] = field(default_factory=dict)


# -- datasets ---------------------------------------------------------------------------------------------


def hard_negatives(corpus: Path, data_dir: Path, n_bases: int = 120) -> Path:
    """Four framings of each base photo (70 % crops at different corners, one mirrored): none of
    the pairs is a duplicate. Cached under ``data_dir/hardneg{n}``; ground truth: empty lists."""
    meta = data_dir / f"hardneg{n_bases}"
    img = meta / "img"
    if (meta / "ground_truth.json").is_file():
        return meta
    img.mkdir(parents=True, exist_ok=True)
    boxes = ((0.0, 0.0, 0.7, 0.7), (0.3, 0.3, 1.0, 1.0), (0.0, 0.3, 0.7, 1.0), (0.3, 0.0, 1.0, 0.7))
    gt: dict[str, list[str]] = {}
    tr: dict[str, dict] = {}
    for base in sorted((corpus / "base").glob("*.jpg"))[:n_bases]:
        photo = Image.open(base).convert("RGB")
        photo.thumbnail((640, 640))
        w, h = photo.size
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            view = photo.crop((int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h)))
            if k == 3:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            name = f"{base.stem}_v{k}.jpg"
            view.save(img / name, quality=90)
            gt[name] = []
            tr[name] = {"role": "distractor", "group": None, "base": base.stem, "transform": None}
    (meta / "transforms.json").write_text(json.dumps(tr))
    (meta / "ground_truth.json").write_text(json.dumps(gt))
    return meta


def keys_needed() -> list[str]:
    return [k for m in HASHES for k in (m, *variants.variant_keys(m, variants.OPTIONS))]


def encode(meta: Path, workers: int, cnn: Any | None) -> Encoded:
    """Hash every file once (all variant keys, EXIF applied), cached as ``.npz`` beside the set."""
    cache = meta / "cascade_hashes.npz"
    keys = keys_needed()
    tr = json.loads((meta / "transforms.json").read_text())
    gt = json.loads((meta / "ground_truth.json").read_text())
    if cache.is_file():
        data = np.load(cache)
        names = json.loads((meta / "cascade_names.json").read_text())
        columns = {k: data[k] for k in keys}
        no_exif = {k[len("noexif_"):]: data[k] for k in data.files if k.startswith("noexif_")}
        if set(no_exif) != set(keys):  # an older cache: only the plain hashes ignored EXIF
            no_exif = _no_exif(meta, names, tr, columns)
            np.savez(cache, **columns, **{f"noexif_{k}": v for k, v in no_exif.items()})
    else:
        t0 = time.perf_counter()
        names, columns, _ = calibrate.encode_dir(meta / "img", keys, workers=workers, exif_transpose=True)
        no_exif = _no_exif(meta, names, tr, columns)
        np.savez(cache, **columns, **{f"noexif_{k}": v for k, v in no_exif.items()})
        (meta / "cascade_names.json").write_text(json.dumps(names))
        log(f"  {meta.name}: hashed {len(names)} files ({len(keys)} hashes each) in {time.perf_counter() - t0:.0f} s")
    enc = Encoded(names, columns, no_exif, calibrate.labelled_pairs(names, gt), tr)
    if cnn is not None:
        enc.vectors = cnn_vectors(meta, names, cnn, workers)
    return enc


def _no_exif(meta: Path, names: list[str], tr: dict[str, dict], columns: dict[str, np.ndarray]
             ) -> dict[str, np.ndarray]:
    """Every hash column with the exif_rotate copies hashed as imagededup (and the old default) see
    them: EXIF orientation ignored."""
    no_exif = {k: v.copy() for k, v in columns.items()}
    for i, n in enumerate(names):
        if tr.get(n, {}).get("transform") == "exif_rotate":
            plain = encode_file(meta / "img" / n, list(columns), exif_transpose=False).hashes
            for k in columns:
                no_exif[k][i] = plain[k]
    return no_exif


def cnn_vectors(meta: Path, names: list[str], cnn: Any, workers: int) -> np.ndarray:
    cache = meta / "cascade_cnn.npy"
    if cache.is_file():
        return np.load(cache)
    from dedupd.imaging import decode_file

    t0 = time.perf_counter()
    vecs = []
    for start in range(0, len(names), 64):
        images = [decode_file(meta / "img" / n, exif_transpose=True) for n in names[start:start + 64]]
        vecs.append(np.asarray(cnn.encode_decoded(images), dtype=np.float32))
    out = np.concatenate(vecs)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    np.save(cache, out)
    log(f"  {meta.name}: CNN-encoded {len(names)} files in {time.perf_counter() - t0:.0f} s")
    return out


# -- pairs under a rule ------------------------------------------------------------------------------------


def _fam(enc: Encoded, method: str, option: str, exif: bool) -> dict[Pair, int]:
    key = (method, option if exif else f"{option}-noexif")
    if key not in enc.fams:
        cols = enc.columns if exif else {**enc.columns, **enc.no_exif}
        enc.fams[key] = calibrate.family_pairs(cols, method, option, 12)
    return enc.fams[key]


def _framing(enc: Encoded, method: str, pair: Pair, exif: bool) -> int:
    """The framing distance of a pair (the worse of its c90~c90 and c81~c81 distances)."""
    cols = enc.columns if exif else {**enc.columns, **enc.no_exif}
    i, j = pair
    return max(int(cols[k][i] ^ cols[k][j]).bit_count() for k in variants.variant_keys(method, ("crop",)))


def cnn_pairs(vectors: np.ndarray, threshold: float) -> dict[Pair, float]:
    out: dict[Pair, float] = {}
    n = len(vectors)
    for start in range(0, n, 512):
        sims = vectors[start:start + 512] @ vectors.T
        r, c = np.nonzero(sims >= threshold)
        for i, j in zip((r + start).tolist(), c.tolist()):
            if i < j:
                out[(i, j)] = float(sims[i - start, j])
    return out


def matches(enc: Encoded, rule: Rule) -> tuple[set[Pair], set[Pair]]:
    """(all pairs, strong pairs) retrieved by ``rule``, by the band rule of
    :func:`dedupd.core.policy.band_of` (strong: a hash within its strong bound, a hash match the
    CNN confirms, or a CNN match above its strong bound)."""
    hits: dict[Pair, set[str]] = defaultdict(set)
    strong: set[Pair] = set()
    for m, (t, s, opts) in rule.hashes.items():
        for option, limit in (("", t), *((o, min(t, v)) for o, v in opts.items())):
            for pair, d in _fam(enc, m, option, rule.exif).items():
                if d <= limit and (option or m not in rule.agree or (s is not None and d <= s)
                                   or _framing(enc, m, pair, rule.exif) <= rule.agree[m]):
                    hits[pair].add(m)
                    if s is not None and d <= min(s, limit):
                        strong.add(pair)
    if rule.cnn is not None and enc.vectors is not None:
        thr, cnn_strong, confirm = rule.cnn
        for pair, sim in cnn_pairs(enc.vectors, thr).items():
            if (hits.get(pair) and sim >= confirm) or sim >= cnn_strong:
                strong.add(pair)  # a hash match the CNN confirms, or a sure CNN match
            hits[pair].add("cnn")
    found = set(hits)
    return found, (strong if rule.banded else found)


# -- scores ------------------------------------------------------------------------------------------------


def _transform(info: dict) -> str | None:
    return "exact" if info["role"] == "copy" else (info["transform"] if info["role"] == "variant" else None)


def score(enc: Encoded, pairs: set[Pair]) -> dict[str, Any]:
    at = {n: i for i, n in enumerate(enc.names)}
    originals = {v["group"]: at[f] for f, v in enc.transforms.items() if v["role"] == "original" and f in at}
    per: dict[str, list[bool]] = defaultdict(list)
    for f, v in enc.transforms.items():
        t = _transform(v)
        if t is not None and f in at:
            a, b = at[f], originals[v["group"]]
            per[t].append((min(a, b), max(a, b)) in pairs)
    prec_n: dict[str, int] = defaultdict(int)
    prec_ok: dict[str, int] = defaultdict(int)
    tf_of = [_transform(enc.transforms.get(n, {"role": "x"})) for n in enc.names]
    for i, j in pairs:
        good = (i, j) in enc.truth
        for t in {tf_of[i], tf_of[j]} - {None}:
            prec_n[t] += 1
            prec_ok[t] += good
    tp = len(pairs & enc.truth)
    return {
        "precision": tp / len(pairs) if pairs else 1.0,
        "recall": tp / len(enc.truth) if enc.truth else 1.0,
        "pairs": len(pairs),
        "false": len(pairs) - tp,
        "per": {t: (float(np.mean(h)), (prec_ok[t] / prec_n[t]) if prec_n[t] else None, len(h)) for t, h in per.items()},
    }


def false_groups(n: int, pairs: set[Pair], truth: set[Pair]) -> tuple[int, int]:
    """(groups, groups holding a false pair) of the connected components of ``pairs``."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        parent[find(i)] = find(j)
    roots = {find(i) for p in pairs for i in p}
    bad = {find(i) for i, j in pairs if (i, j) not in truth}
    return len(roots), len(bad)


# -- cost --------------------------------------------------------------------------------------------------


def cost(img: Path, n: int = 60, repeats: int = 3) -> list[tuple[str, int, float]]:
    """(label, bytes per file, median ms per file) of hashing with each option set (decode included)."""
    from dedupd.encoding import hashes_of
    from dedupd.files import list_files
    from dedupd.imaging import decode_file

    files = list_files(img, recursive=True)[:n]
    images = [decode_file(f, exif_transpose=True) for f in files]
    out = []
    for label, opts in (("phash", ()), ("phash + crop", ("crop",)), ("phash + flip", ("dihedral",)),
                        ("phash + crop + flip", ("crop", "dihedral"))):
        keys = ["phash", *variants.variant_keys("phash", opts)]
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for im in images:
                hashes_of(im, keys)
            runs.append((time.perf_counter() - t0) * 1000 / len(images))
        out.append((label, 8 * len(keys), statistics.median(runs)))
    t0 = time.perf_counter()
    for f in files:
        decode_file(f, exif_transpose=True)
    out.append(("(decode alone, for scale)", 0, (time.perf_counter() - t0) * 1000 / len(files)))
    return out


# -- report ------------------------------------------------------------------------------------------------


def _f(x: float | None, d: int = 2) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def _false_groups_table(title: str, enc: Encoded, rules: Sequence[Rule]) -> list[str]:
    out = ["", f"### False-positive groups, {title}", "",
           "| rule | groups | groups with a false pair (all) | strong pairs: groups with a false pair | "
           "false pairs (all / strong) | P / R |", "|---|---|---|---|---|---|"]
    for r in rules:
        if r.cnn is not None and enc.vectors is None:
            continue
        found, strong = matches(enc, r)
        g, bad = false_groups(len(enc.names), found, enc.truth)
        _, bad_s = false_groups(len(enc.names), strong, enc.truth)
        sc = score(enc, found)
        out.append(f"| {r.label} | {g:,} | {bad} | {bad_s} | {sc['false']} / {len(strong - enc.truth)} | "
                   f"{_f(sc['precision'], 4)} / {_f(sc['recall'], 3)} |")
    # the framing check's effect: the default against the same rule without it (RULES[2], RULES[1])
    old, new = (next((r for r in rules if r.label == x.label), None) for x in RULES[2:0:-1])
    if old is not None and new is not None:
        per = {r.label: score(enc, matches(enc, r)[0])["per"] for r in (old, new)}
        out += ["", f"Recall per transformation there, *{old.label}* → *{new.label}*: "
                + ", ".join(f"{t} {_f(per[old.label][t][0])} → {_f(per[new.label][t][0])}"
                            for t in ORDER if t in per[old.label]) + "."]
    return out


def run(sets: Mapping[str, Encoded], big: Encoded | None, cost_rows: Sequence[tuple[str, int, float]],
        rules: Sequence[Rule] = RULES, tiny: Encoded | None = None) -> str:
    """The markdown section (also printed)."""
    has_cnn = all(e.vectors is not None for e in sets.values())
    rules = [r for r in rules if r.cnn is None or has_cnn]
    res = {(r.label, name): [score(e, p) for p in matches(e, r)] for r in rules for name, e in sets.items()}
    lines = ["| rule | transformed: P / R (strong P / R) | mixed: P / R (strong P / R) | "
             "hard negatives: false pairs (strong) | everyday edits: min recall (which) |", "|---|---|---|---|---|"]
    for r in rules:
        cells = []
        for name in ("transformed", "mixed"):
            a, s = res[(r.label, name)]
            cells.append(f"{_f(a['precision'], 4)} / {_f(a['recall'], 3)} ({_f(s['precision'], 4)} / "
                         f"{_f(s['recall'], 3)})")
        ha, hs = res[(r.label, "hard negatives")]
        per = res[(r.label, "transformed")][0]["per"]
        worst = min(EVERYDAY, key=lambda t: per[t][0])
        lines.append(f"| {r.label} | {cells[0]} | {cells[1]} | {ha['false']} ({hs['false']}) | "
                     f"{_f(per[worst][0])} ({worst}) |")
    out = ["### Rules compared (pair precision P, recall R; strong = the band quarantine may move)", "",
           *lines, ""]
    out += ["### Recall / precision per transformation (transformed set; all matches)", ""]
    head = "| transformation (n) | " + " | ".join(r.label for r in rules) + " |"
    out += [head, "|---|" + "---|" * len(rules)]
    per0 = res[(rules[0].label, "transformed")][0]["per"]
    for t in [t for t in ORDER if t in per0]:
        cells = []
        for r in rules:
            rec, prec, _ = res[(r.label, "transformed")][0]["per"][t]
            cells.append(f"{_f(rec)} / {_f(prec)}")
        out.append(f"| {t} ({per0[t][2]}) | " + " | ".join(cells) + " |")
    out += ["", "### Same, mixed set (fewer files per transformation: noisier)", "", head,
            "|---|" + "---|" * len(rules)]
    perm = res[(rules[0].label, "mixed")][0]["per"]
    for t in [t for t in ORDER if t in perm]:
        cells = []
        for r in rules:
            rec, prec, _ = res[(r.label, "mixed")][0]["per"][t]
            cells.append(f"{_f(rec)} / {_f(prec)}")
        out.append(f"| {t} ({perm[t][2]}) | " + " | ".join(cells) + " |")
    if big is not None:
        out += _false_groups_table(f"mixed set of {len(big.names):,} files", big, rules)
    if tiny is not None:
        out += _false_groups_table(f"mixed set of {len(tiny.names):,} tiny files (64 px)", tiny, rules)
    out += ["", "### Cost of the variant hashes (pHash; 60 files of 640 px, median of 3 runs)", "",
            "| hashes | bytes per file in the store | ms per file (hashing, after the decode) |", "|---|---|---|"]
    out += [f"| {label} | {b or '-'} | {ms:.2f} |" for label, b, ms in cost_rows]
    text = "\n".join(out)
    print(text)
    return text

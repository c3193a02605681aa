"""The daemon's index with crop/flip variant hashes: incremental adds, bulk load and queries agree
with the pair rule on real photos, and flipped/cropped copies are linked."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
from PIL import Image

from dedupd.core import variants
from dedupd.core.policy import Matching, pair_evidence
from dedupd.daemon.index import FileInfo, MatchIndex
from dedupd.encoding import hashes_of
from dedupd.imaging import decode_array

RULE = Matching({"phash": 10, "dhash": 8}, strong={"phash": 6, "dhash": 6},
                options={"phash": {"crop": 8, "dihedral": 6}, "dhash": {"crop": 6}})
KEYS = [k for m in RULE.hashes for k in (m, *variants.variant_keys(m, RULE.options[m]))]


def _edits(im: np.ndarray) -> dict[str, np.ndarray]:
    h, w = im.shape[:2]
    dy, dx = h // 20, w // 20
    return {"orig": im, "hflip": im[:, ::-1], "rot90": np.rot90(im), "border5": im[dy:h - dy, dx:w - dx],
            "bright": np.clip(im.astype(np.int16) + 20, 0, 255).astype(np.uint8)}


def _files(corpus_dir: Path) -> dict[str, dict[str, int]]:
    out = {}
    for k, base in enumerate(sorted((corpus_dir / "base").glob("*.jpg"))[:6]):
        img = Image.open(base).convert("RGB")
        img.thumbnail((480, 480))
        for name, arr in _edits(np.asarray(img)).items():
            out[f"/p/{k}-{name}.png"] = hashes_of(decode_array(np.ascontiguousarray(arr)), KEYS)
    return out


def _edges(index: MatchIndex) -> set[frozenset[str]]:
    return {frozenset((p, q)) for p in index.files for q, _ in index.duplicates_of(p)}


def test_index_links_variant_matches_like_the_pair_rule(corpus_dir: Path) -> None:
    files = _files(corpus_dir)
    expected = {frozenset((a, b)) for a, b in itertools.combinations(files, 2)
                if pair_evidence(RULE, files[a], files[b], None) is not None}
    # every edit of a photo matches its original (flip and rotation through the dihedral hashes)
    for k in range(6):
        for name in ("hflip", "rot90", "border5", "bright"):
            assert frozenset((f"/p/{k}-orig.png", f"/p/{k}-{name}.png")) in expected, (k, name)

    def info(i: int) -> FileInfo:
        return FileInfo(bytes([i]) * 16, 1, 1, 1, 1)

    names = list(files)
    incremental = MatchIndex(RULE)
    for i in random.Random(1).sample(range(len(names)), len(names)):
        incremental.add(names[i], info(i), files[names[i]])
    assert _edges(incremental) == expected

    bulk = MatchIndex(RULE)
    bulk.bulk_load([(n, info(i), files[n], None) for i, n in enumerate(names)])
    assert _edges(bulk) == expected

    # a query (not added) sees the same neighbours as the graph
    for n in names[:10]:
        got = {p for p, _ in bulk.query(files[n]) if p != n}
        assert got == {p for p, _ in bulk.duplicates_of(n)}

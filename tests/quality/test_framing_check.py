"""The framing check (``methods.<hash>.agree``, on by default) on real tiny photos, against ground truth.

A 3,000-file mixed set of 64 px images from the corpus (the kind of set where the default rule's
weak pHash matches were mostly chance look-alikes: flat tiles, one edge): the check must cut most
false pairs and keep nearly every true one, and the daemon's index must decide exactly as the rule.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from dedupd.calibrate import encode_dir
from dedupd.core.policy import Matching, pair_evidence
from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.index import FileInfo, MatchIndex
from dedupd.daemon.loader import matching_of

KEYS = ("phash", "phash@c90", "phash@c81")


def default_rule(tmp: Path) -> Matching:
    cfg = config_from_mapping({"roots": [str(tmp)], "store_dir": str(tmp / "store"), "report_dir": str(tmp / "r"),
                               "socket_path": str(tmp / "s.sock")})
    return matching_of(cfg)


def candidates(cols: dict[str, np.ndarray]) -> set[tuple[int, int]]:
    """Index pairs within the default's reach: plain pHash <= 10 or a crop hash within 2."""
    plain = cols["phash"]
    out: set[tuple[int, int]] = set()
    for column, radius in (("phash", 10), ("phash@c90", 2), ("phash@c81", 2)):
        i, j = np.nonzero(np.bitwise_count(cols[column][:, None] ^ plain[None, :]) <= radius)
        out |= {(min(a, b), max(a, b)) for a, b in zip(i.tolist(), j.tolist()) if a != b}
    return out


def test_framing_check_cuts_false_pairs_and_keeps_true_ones(dataset, tmp_path: Path) -> None:
    data = dataset("mixed", "--count", "3000", "--side", "64", "--seed", "1")
    images = data / "images"
    names, cols, bad = encode_dir(images, KEYS, workers=2)
    assert not bad and len(names) == 3000
    gt = json.loads((data / "meta" / "ground_truth.json").read_text())
    truth = {frozenset((a, b)) for a, bs in gt.items() for b in bs}
    hashes = [{k: int(cols[k][i]) for k in KEYS} for i in range(len(names))]
    new = default_rule(tmp_path)
    assert new.agree == {"phash": 10}
    old = replace(new, agree={})  # the default before the check
    pairs = candidates(cols)
    found = {label: {frozenset((names[i], names[j])) for i, j in pairs if pair_evidence(rule, hashes[i], hashes[j], None)}
             for label, rule in (("old", old), ("new", new))}
    false = {k: v - truth for k, v in found.items()}
    true = {k: v & truth for k, v in found.items()}
    assert found["new"] <= found["old"]  # the check only removes pairs
    assert len(false["old"]) >= 8, "the set must have chance matches to cut"
    assert len(false["new"]) * 4 <= len(false["old"]), (len(false["old"]), len(false["new"]))
    assert len(true["new"]) >= 0.97 * len(true["old"]) and len(true["old"]) >= 500, (len(true["old"]), len(true["new"]))

    # the daemon's index (edges with the check's score, never searched by it) decides the same pairs
    index = MatchIndex(new)
    for i, name in enumerate(names):
        digest = hashlib.blake2b((images / name).read_bytes(), digest_size=16).digest()
        index.add(str(images / name), FileInfo(digest, 1, 1, 64, 64), hashes[i])
    assert "phash@agree" in index.reach.names
    by_index = {frozenset((str(Path(p).relative_to(images)), str(Path(q).relative_to(images))))
                for p in index.files for q, _ in index.duplicates_of(p)}
    assert by_index == found["new"]

"""``dedupd calibrate`` on a generated labelled set: its recommendation reproduces what it printed."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dedupd.core import variants
from dedupd.core.policy import STRONG, Matching, pair_evidence
from dedupd.encoding import encode_file
from dedupd.methods import PHash


@pytest.fixture(scope="module")
def labelled(dataset) -> tuple[Path, Path]:
    root = dataset("transformed", "--num-bases", "8")
    return root / "images", root / "meta" / "ground_truth.json"


def _pr(found: set[frozenset[str]], truth: set[frozenset[str]]) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), tp / len(truth)


def test_calibrate_recommendation_reproduces_its_numbers(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    img, gt_file = labelled
    out = tmp_path / "cal.json"
    res = subprocess.run([sys.executable, "-m", "dedupd", "calibrate", str(img), "--ground-truth", str(gt_file),
                          "--methods", "phash", "--no-exif", "--json", str(out)],
                         capture_output=True, text=True, timeout=300, env=os.environ)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = json.loads(out.read_text())["methods"]["phash"]
    assert f"phash: precision {rec['precision']:.4f}, recall {rec['recall']:.4f}" in res.stdout
    assert rec["line"] in res.stdout and rec["precision"] >= 0.99

    gt = json.loads(gt_file.read_text())
    truth = {frozenset((a, b)) for a, dups in gt.items() for b in dups}
    names = sorted(gt)
    # 1. the plain sweep equals the library's find_duplicates at every printed threshold
    ph = PHash(verbose=False)
    enc = ph.encode_images(image_dir=str(img), recursive=True)
    for p in rec["plain"][::4]:
        dups = ph.find_duplicates(encoding_map=enc, max_distance_threshold=p["threshold"])
        found = {frozenset((a, b)) for a, bs in dups.items() for b in bs}
        assert len(found) == p["retrieved"]
        assert _pr(found, truth) == pytest.approx((p["precision"], p["recall"]))
    # 2. the recommended config, applied by the daemon's own rule, gives the printed numbers
    options = rec["options"]
    keys = ["phash", *variants.variant_keys("phash", options)]
    hashes = {n: encode_file(img / n, keys).hashes for n in names}
    rule = Matching({"phash": rec["threshold"]}, strong={"phash": rec["strong"]}, options={"phash": options})
    found, strong = set(), set()
    for a, b in itertools.combinations(names, 2):
        ev = pair_evidence(rule, hashes[a], hashes[b], None)
        if ev is not None:
            found.add(frozenset((a, b)))
            if ev.band == STRONG:
                strong.add(frozenset((a, b)))
    assert _pr(found, truth) == pytest.approx((rec["precision"], rec["recall"]))
    assert _pr(strong, truth) == pytest.approx((rec["strong_precision"], rec["strong_recall"]))
    assert rec["strong_precision"] >= 0.999


def test_calibrate_names_a_bad_ground_truth(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    img, _ = labelled
    bad = tmp_path / "gt.json"
    bad.write_text("[1, 2]")
    res = subprocess.run([sys.executable, "-m", "dedupd", "calibrate", str(img), "--ground-truth", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and str(bad) in res.stderr and "imagededup's ground-truth format" in res.stderr

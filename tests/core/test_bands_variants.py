"""The cascade's confidence bands and the crop/flip variant hashes (pure core + real photos)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dedupd.core import variants
from dedupd.core.keep import Candidate
from dedupd.core.policy import STRONG, WEAK, Evidence, Matching, band_of, decide_group, pair_evidence
from dedupd.encoding import hashes_of
from dedupd.imaging import decode_array

BANDED = Matching({"phash": 10, "dhash": 10}, cnn=0.9, strong={"phash": 6, "dhash": 6, "cnn": 0.97})


def test_band_rules() -> None:
    assert band_of(BANDED, {"phash": 6}, ["phash"]) == STRONG
    assert band_of(BANDED, {"phash": 7}, ["phash"]) == WEAK  # beyond the strong bound: review
    assert band_of(BANDED, {"phash": 9, "dhash": 4}, ["phash", "dhash"]) == STRONG  # another method is sure
    assert band_of(BANDED, {"phash": 9, "cnn": 0.92}, ["phash", "cnn"]) == STRONG  # the CNN confirms
    assert band_of(BANDED, {"phash": 30, "cnn": 0.95}, ["cnn"]) == WEAK  # CNN alone, below its bound
    assert band_of(BANDED, {"phash": 30, "cnn": 0.98}, ["cnn"]) == STRONG
    # with a confirmation bound, a borderline hash match needs that much CNN similarity
    confirming = Matching({"phash": 10}, cnn=0.9, strong={"phash": 6, "cnn": 0.99}, confirm=0.97)
    assert band_of(confirming, {"phash": 9, "cnn": 0.96}, ["phash", "cnn"]) == WEAK
    assert band_of(confirming, {"phash": 9, "cnn": 0.97}, ["phash", "cnn"]) == STRONG
    # no bands configured: every match is strong (the rule before bands)
    assert band_of(Matching({"phash": 10}), {"phash": 10}, ["phash"]) == STRONG
    # a method without a strong bound (aHash by default) never makes a match strong alone
    assert band_of(Matching({"ahash": 4}, strong={"phash": 6}), {"ahash": 0}, ["ahash"]) == WEAK


def test_pair_evidence_carries_band_and_matched_methods() -> None:
    a = {"phash": 0, "dhash": 0}
    ev = pair_evidence(BANDED, a, {"phash": 0b1111111, "dhash": 0b11111111111}, None)
    assert ev is not None and ev.band == WEAK and ev.matched == ("phash",) and ev.score == 7
    d = ev.as_dict()
    assert d["band"] == WEAK and d["matched"] == ["phash"] and d["scores"] == {"phash": 7, "dhash": 11}
    ev = pair_evidence(BANDED, a, {"phash": 0b1111111, "dhash": 0b11}, None)
    assert ev is not None and ev.band == STRONG and ev.matched == ("phash", "dhash")


def test_weak_direct_match_is_reported_but_never_moved() -> None:
    weak = Evidence("phash", 8, {"phash": 8}, WEAK)
    strong = Evidence("phash", 2, {"phash": 2}, STRONG)
    members = [Candidate("/k.jpg", 400, 10, 1), Candidate("/s.jpg", 100, 5, 2), Candidate("/w.jpg", 100, 5, 3)]
    edges = {"/k.jpg": {"/s.jpg": strong, "/w.jpg": weak}, "/s.jpg": {"/k.jpg": strong}, "/w.jpg": {"/k.jpg": weak}}
    g = decide_group(members, edges, ["largest_pixels"])
    assert g.keep == "/k.jpg"
    by_path = {d.path: d for d in g.duplicates}
    assert by_path["/w.jpg"].direct and by_path["/w.jpg"].evidence == weak
    assert [d.path for d in g.moves] == ["/s.jpg"]


def test_variant_keys_and_comparisons_are_symmetric() -> None:
    assert variants.variant_keys("phash", ["crop"]) == ("phash@c90", "phash@c81")
    assert len(variants.variant_keys("dhash", ["dihedral"])) == 7
    with pytest.raises(ValueError, match="unknown hash option"):
        variants.variant_keys("phash", ["mirror"])
    with pytest.raises(ValueError, match="unknown hash variant"):
        variants.split_key("phash@zz")
    comps = set(variants.comparisons("phash", ["crop", "dihedral"]))
    assert {(b, a) for a, b in comps} == comps
    rng = np.random.default_rng(0)
    keys = ["phash", *variants.variant_keys("phash", ["crop", "dihedral"])]
    a = {k: int(rng.integers(0, 2**63)) for k in keys}
    b = {k: int(rng.integers(0, 2**63)) for k in keys}
    assert variants.distances("phash", ["crop", "dihedral"], a, b) .keys() == {"", "crop", "dihedral"}
    assert variants.distance("phash", ["crop", "dihedral"], a, b)[0] == \
        variants.distance("phash", ["crop", "dihedral"], b, a)[0]  # type: ignore[index]


def _photo(corpus_dir: Path, k: int = 0) -> np.ndarray:
    img = Image.open(sorted((corpus_dir / "base").glob("*.jpg"))[k]).convert("RGB")
    img.thumbnail((640, 640))
    return np.asarray(img)


@pytest.mark.parametrize("method", ["phash", "dhash"])
def test_flip_option_finds_flipped_and_rotated_copies(corpus_dir: Path, method: str) -> None:
    """Real photos: every dihedral copy (mirror, 90/180/270°, transpose) matches with ``flip`` on
    within the default variant limit, and the plain hash misses (nearly) all of them."""
    keys = [method, *variants.variant_keys(method, ["dihedral"])]
    plain = Matching({method: 10})
    flip = Matching({method: 10}, options={method: {"dihedral": 6}})
    for k in range(3):
        im = _photo(corpus_dir, k)
        orig = hashes_of(decode_array(im), keys)
        copies = [im[:, ::-1], im[::-1], np.rot90(im, 1), np.rot90(im, 2), np.rot90(im, -1), im.transpose(1, 0, 2)]
        plain_hits = 0
        for c in copies:
            h = hashes_of(decode_array(np.ascontiguousarray(c)), keys)
            plain_hits += pair_evidence(plain, orig, h, None) is not None
            ev = pair_evidence(flip, orig, h, None)
            assert ev is not None and ev.score <= 6 and ev.variants.get(method, "d").startswith("d"), ev
        assert plain_hits <= 1


def test_crop_option_matches_a_border_crop(corpus_dir: Path) -> None:
    keys = ["phash", *variants.variant_keys("phash", ["crop"])]
    crop = Matching({"phash": 10}, options={"phash": {"crop": 8}})
    for k in range(3):
        im = _photo(corpus_dir, k)
        h, w = im.shape[:2]
        for f in (0.05, 0.10):  # 5 % / 10 % of each side cropped away: the c90 / c81 hashes
            dy, dx = int(h * f), int(w * f)
            cut = np.ascontiguousarray(im[dy:h - dy, dx:w - dx])
            ev = pair_evidence(crop, hashes_of(decode_array(im), keys), hashes_of(decode_array(cut), keys), None)
            assert ev is not None and ev.variants.get("phash") in ("c90", "c81"), (k, f, ev)


def test_plain_hashes_unchanged_by_variants(corpus_dir: Path) -> None:
    """Asking for variant keys never changes the plain (imagededup-identical) hashes."""
    img = decode_array(_photo(corpus_dir))
    plain = hashes_of(img)
    both = hashes_of(img, [*plain, *variants.variant_keys("phash", ["crop", "dihedral"])])
    assert {k: both[k] for k in plain} == plain


def test_distances_table_matches_every_comparison_by_hand() -> None:
    """The cached comparison table gives, per family, the smallest distance over the comparisons
    that :func:`variants.comparisons` lists, whatever iterable the options come in (and bad
    options still raise)."""
    rng = np.random.default_rng(7)
    keys = ("phash", *variants.variant_keys("phash", variants.OPTIONS))
    for _ in range(200):
        a = {k: int(rng.integers(0, 2**63)) for k in keys if rng.random() < 0.8}
        b = {k: int(rng.integers(0, 2**63)) for k in keys if rng.random() < 0.8}
        for options in (("crop",), ["dihedral"], {"crop": 2, "dihedral": 2}, ("dihedral", "crop")):
            want: dict[str, tuple[int, str]] = {}
            for ka, kb in variants.comparisons("phash", options):
                if ka in a and kb in b:
                    variant = variants.split_key(ka if ka != "phash" else kb)[1] or ""
                    fam = variants.family(variant) if variant else ""
                    d = (a[ka] ^ b[kb]).bit_count()
                    if fam not in want or d < want[fam][0]:
                        want[fam] = (d, variant)
            assert variants.distances("phash", options, a, b) == want
    with pytest.raises(ValueError, match="unknown hash option"):
        variants.distances("phash", ("mirror",), {}, {})


def test_option_distance_is_the_family_minimum_of_distances() -> None:
    rng = np.random.default_rng(11)
    keys = ("dhash", *variants.variant_keys("dhash", variants.OPTIONS))
    for _ in range(300):
        a = {k: int(rng.integers(0, 2**63)) for k in keys if rng.random() < 0.7}
        b = {k: int(rng.integers(0, 2**63)) for k in keys if rng.random() < 0.7}
        for option in variants.OPTIONS:
            found = variants.distances("dhash", (option,), a, b).get(option)
            assert variants.option_distance("dhash", option, a, b) == (None if found is None else found[0])

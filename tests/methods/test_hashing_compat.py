"""Differential tests: dedupd.methods hashing vs the reference imagededup on real photos."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dedupd.methods import AHash, DHash, PHash, WHash
from tests.methods.odd_images import build as build_odd_images

ref_methods = pytest.importorskip("imagededup.methods", reason="the test extra installs imagededup")

PAIRS = [(PHash, ref_methods.PHash), (AHash, ref_methods.AHash), (DHash, ref_methods.DHash), (WHash, ref_methods.WHash)]
IDS = [p[0].__name__ for p in PAIRS]


@pytest.fixture(scope="module")
def folders(dataset) -> dict[str, Path]:
    return {
        "transformed": dataset("transformed", "--num-bases", "8") / "images",
        "mixed": dataset("mixed", "--count", "240", "--nested") / "images",
    }


@pytest.fixture(scope="module")
def ref_encodings(folders):
    return {
        (ours.__name__, kind): ref(verbose=False).encode_images(folder, recursive=True, num_enc_workers=0)
        for ours, ref in PAIRS
        for kind, folder in folders.items()
    }


@pytest.mark.parametrize("kind", ["transformed", "mixed"])
@pytest.mark.parametrize("ours,ref", PAIRS, ids=IDS)
def test_hashes_identical(ours, ref, kind, folders, ref_encodings):
    expected = ref_encodings[(ours.__name__, kind)]
    got = ours(verbose=False).encode_images(folders[kind], recursive=True, num_enc_workers=2)
    assert len(expected) >= 130
    differing = {k: (v, got.get(k)) for k, v in expected.items() if got.get(k) != v}
    assert not differing, f"hashes differ from imagededup for: {differing}"
    assert set(got) == set(expected)


@pytest.mark.parametrize("threshold", [0, 10, 32])
@pytest.mark.parametrize("ours,ref", PAIRS, ids=IDS)
def test_find_duplicates_identical(ours, ref, threshold, ref_encodings):
    enc = ref_encodings[(ours.__name__, "mixed")]
    for scores in (False, True):
        expected = ref(verbose=False).find_duplicates(
            encoding_map=enc, max_distance_threshold=threshold, scores=scores, num_dist_workers=0
        )
        got = ours(verbose=False).find_duplicates(encoding_map=enc, max_distance_threshold=threshold, scores=scores)
        assert got == expected  # same keys, same lists in the same order, same distances
        # the BK-tree path: the same lists too, equal distances in the reference tree's order
        expected = ref(verbose=False).find_duplicates(
            encoding_map=enc, max_distance_threshold=threshold, scores=scores, search_method="bktree",
            num_dist_workers=0)
        got = ours(verbose=False).find_duplicates(
            encoding_map=enc, max_distance_threshold=threshold, scores=scores, search_method="bktree")
        assert got == expected


@pytest.mark.parametrize("seed", range(4))
def test_bktree_lists_ties_in_the_reference_order(seed):
    """Hashes drawn from a few 64-bit values with 0-3 bits flipped: many equal hashes and equal
    distances, where the order of a list is all the BK-tree decides."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bases = rng.integers(0, 2**63, size=6, dtype=np.int64).tolist()
    enc = {}
    for k in range(300):
        value = bases[int(rng.integers(len(bases)))]
        for bit in rng.choice(64, size=int(rng.integers(0, 4)), replace=False).tolist():
            value ^= 1 << bit
        enc[f"f{k:03d}.jpg"] = f"{value:016x}"
    for threshold in (0, 2, 5):
        expected = ref_methods.PHash(verbose=False).find_duplicates(
            encoding_map=enc, max_distance_threshold=threshold, scores=True, search_method="bktree",
            num_dist_workers=0)
        got = PHash(verbose=False).find_duplicates(
            encoding_map=enc, max_distance_threshold=threshold, scores=True, search_method="bktree")
        assert got == expected


@pytest.mark.parametrize("ours,ref", PAIRS, ids=IDS)
def test_find_duplicates_from_dir_and_to_remove(ours, ref, folders, tmp_path):
    folder = folders["transformed"]
    ref_out, our_out = tmp_path / "ref.json", tmp_path / "ours.json"
    expected = ref(verbose=False).find_duplicates(image_dir=folder, scores=True, outfile=str(ref_out), num_enc_workers=0)
    got = ours(verbose=False).find_duplicates(image_dir=folder, scores=True, outfile=str(our_out))
    assert got == expected
    assert json.loads(our_out.read_text()) == json.loads(ref_out.read_text())
    assert our_out.read_text() == ref_out.read_text()  # byte-identical JSON
    for threshold in (0, 10, 20):
        exp_rm = ref(verbose=False).find_duplicates_to_remove(
            image_dir=folder, max_distance_threshold=threshold, num_enc_workers=0
        )
        got_rm = ours(verbose=False).find_duplicates_to_remove(image_dir=folder, max_distance_threshold=threshold)
        assert sorted(got_rm) == sorted(exp_rm)  # the reference returns a set's arbitrary order
        assert got_rm == sorted(got_rm)


@pytest.mark.parametrize("ours,ref", PAIRS, ids=IDS)
def test_encode_image_file_and_array(ours, ref, corpus_dir):
    import numpy as np
    from PIL import Image

    path = corpus_dir / "base" / "b0003.jpg"
    assert ours().encode_image(image_file=path) == ref().encode_image(image_file=path)
    assert ours().encode_image(image_file=str(path)) == ref().encode_image(image_file=str(path))
    rgb = np.asarray(Image.open(path).convert("RGB"))
    assert ours().encode_image(image_array=rgb) == ref().encode_image(image_array=rgb)
    gray = np.asarray(Image.open(path).convert("L"))
    assert ours().encode_image(image_array=gray) == ref().encode_image(image_array=gray)
    assert len(ours().encode_image(image_file=path)) == 16


def test_odd_inputs_match_reference_or_are_skipped(tmp_path, corpus_dir, caplog):
    kinds = build_odd_images(corpus_dir / "base" / "b0010.jpg", tmp_path / "odd")
    caplog.set_level(logging.WARNING, logger="dedupd")
    for ours, ref in PAIRS:
        expected = ref(verbose=False).encode_images(tmp_path / "odd", num_enc_workers=0)
        got = ours(verbose=False).encode_images(tmp_path / "odd", num_enc_workers=0)
        assert got == expected, ours.__name__
    skipped = set(kinds) - set(got)
    assert {"truncated.jpg", "corrupt.jpg", "empty.jpg", "not_an_image.png", "bomb.png", "icon.jpg"} <= skipped
    assert {"gray16.png", "palette.png", "cmyk.jpg", "alpha.png", "exif_rotated.jpg", "animated.gif"} <= set(got)
    # every skipped file is named in a warning, with a reason
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("dedupd")]
    for name in skipped:
        assert any(name in m for m in messages), f"no warning names {name}"
    assert any("empty file" in m for m in messages)
    assert any("decompression bomb" in m for m in messages)


def test_threshold_validation_matches_reference():
    enc = {"a.jpg": "f" * 16, "b.jpg": "0" * 16}
    for bad, err in [(10.0, TypeError), ("10", TypeError), (-1, ValueError), (65, ValueError)]:
        with pytest.raises(err, match="Threshold must be an int between 0 and 64"):
            PHash().find_duplicates(encoding_map=enc, max_distance_threshold=bad)
        with pytest.raises(err):
            ref_methods.PHash().find_duplicates(encoding_map=enc, max_distance_threshold=bad)
    with pytest.raises(ValueError, match="Provide either an image directory or encodings"):
        PHash().find_duplicates()
    with pytest.raises(ValueError, match="valid directory"):
        PHash().encode_images("/nonexistent/dir")
    with pytest.raises(ValueError, match="image file path or image array"):
        PHash().encode_image(image_file="/nonexistent/file.jpg")


def test_hamming_distance_matches_reference():
    cases = [("0" * 16, "f" * 16), ("8000000000000000", "0000000000000001"), ("abc", "def"), ("ff" * 8, "fe" * 8)]
    for a, b in cases:
        assert PHash.hamming_distance(a, b) == ref_methods.PHash.hamming_distance(a, b)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_encode_image_given_something_that_is_not_a_path(tmp_path, corpus_dir):
    """A file object or a bytes path is not a path for either library: ValueError, not a hash or
    another exception."""
    photo = sorted((corpus_dir / "base").glob("*.jpg"))[0]
    for lib in (PHash, ref_methods.PHash):
        with open(photo, "rb") as handle:
            for value in (handle, bytes(photo)):
                with pytest.raises(ValueError, match="Please provide either image file path or image array!"):
                    lib(verbose=False).encode_image(image_file=value)


def test_progress_bars_look_like_the_reference(tmp_path, corpus_dir, capsys):
    """``verbose=True``: the same bars (percent, bar, counts; not the timings) on stderr."""
    import re

    for photo in sorted((corpus_dir / "base").glob("*.jpg"))[:4]:
        (tmp_path / photo.name).write_bytes(photo.read_bytes())

    def bars(lib):
        lib(verbose=True).find_duplicates(image_dir=tmp_path, num_enc_workers=0)
        err = capsys.readouterr().err
        final = [line.split("\r")[-1] for line in err.splitlines() if "%|" in line]
        return [re.sub(r" \[.*\]$", "", line) for line in final]

    ours, ref = bars(PHash), bars(ref_methods.PHash)
    assert ours == ref and "100%|██████████| 4/4" in ours, (ours, ref)


@pytest.mark.parametrize("search_method", ["brute_force_cython", "brute_force", "bktree"])
def test_score_types_per_search_method(search_method, ref_encodings):
    """The reference's "brute_force" lists numpy.int64 distances, its other searches int."""
    enc = ref_encodings[("PHash", "mixed")]
    expected = ref_methods.PHash(verbose=False).find_duplicates(
        encoding_map=enc, max_distance_threshold=10, scores=True, search_method=search_method, num_dist_workers=0)
    got = PHash(verbose=False).find_duplicates(
        encoding_map=enc, max_distance_threshold=10, scores=True, search_method=search_method)
    assert got == expected

    def types(result):
        return {type(score) for dups in result.values() for _, score in dups}

    assert types(got) == types(expected) and types(got)

"""Golden values and properties of the pure hash layer (no reference package needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dedupd.core.algorithms import HASH_METHODS, TARGET_SIZES, hash_array
from dedupd.core.hashes import bits_to_int, hamming, hex_hamming, hex_to_int, hexes_to_array, int_to_hex
from dedupd.encoding import encode_file

# Pinned from imagededup 0.3.3 on the shared corpus: guards against drift in Pillow/scipy/pywt.
GOLDEN = {
    "b0000.jpg": {"phash": "857a7a85957ae195", "ahash": "000262627e7e6202", "dhash": "43d6d6d6d6d6d6d4",
                  "whash": "201a627e7f7e6262"},
    "b0100.jpg": {"phash": "81ed04be33db04fe", "ahash": "ffff7f7f0f000000", "dhash": "eaf2f2dad8fcf8f8",
                  "whash": "ffff7f3f0e000000"},
}

u64 = st.integers(min_value=0, max_value=2**64 - 1)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_hashes_from_one_decode(corpus_dir, name):
    enc = encode_file(corpus_dir / "base" / name)
    assert {m: int_to_hex(v) for m, v in enc.hashes.items()} == GOLDEN[name]
    assert enc.width > 0 and enc.height > 0 and enc.format == "JPEG"


@given(u64)
def test_hex_round_trip(v):
    h = int_to_hex(v)
    assert len(h) == 16 and h == h.lower()
    assert hex_to_int(h) == v


@given(u64, u64)
def test_hamming_is_a_metric_and_matches_hex(a, b):
    assert hamming(a, b) == hamming(b, a) == hex_hamming(int_to_hex(a), int_to_hex(b))
    assert hamming(a, a) == 0
    assert 0 <= hamming(a, b) <= 64


def test_hex_hamming_pads_short_hashes():
    assert hex_hamming("1", "0000000000000001") == 0
    assert hex_hamming("f", "0") == 4


def test_bits_to_int_is_row_major_msb_first():
    bits = np.zeros((8, 8), dtype=bool)
    bits[0, 0] = True
    assert bits_to_int(bits) == 1 << 63
    bits[:] = False
    bits[7, 7] = True
    assert bits_to_int(bits) == 1


@pytest.mark.parametrize("method", HASH_METHODS)
def test_constant_image_and_small_change(method):
    w, h = TARGET_SIZES[method]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(h, w)).astype(np.uint8)
    base = hash_array(method, img)
    noisy = np.clip(img.astype(int) + rng.integers(-2, 3, size=img.shape), 0, 255).astype(np.uint8)
    assert hamming(base, hash_array(method, noisy)) <= 16
    inverted = (255 - img).astype(np.uint8)
    assert hamming(base, hash_array(method, inverted)) >= 32


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown hash method 'xhash'"):
        hash_array("xhash", np.zeros((8, 8), dtype=np.uint8))


def test_hexes_to_array():
    arr = hexes_to_array(["ffffffffffffffff", "0000000000000001"])
    assert arr.dtype == np.uint64 and arr.tolist() == [2**64 - 1, 1]


def test_median_equals_numpys():
    # the hashes' median (a partition): np.median's value exactly, odd and even counts, ties
    from dedupd.core.algorithms import median

    rng = np.random.default_rng(5)
    for n in [*range(1, 70), 128, 129]:
        for values in (rng.normal(size=n) * 1e3, rng.integers(0, 4, n).astype(float), np.full(n, 0.1)):
            assert median(values) == np.median(values), (n, values)

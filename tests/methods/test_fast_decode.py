"""``decode: fast`` (DCT-domain / box reduction before the resizes) against the exact decode.

The agreement test hashes a real transformed set from the corpus (photos and every everyday edit
of them, EXIF-rotated copies included) both ways. Measured on this set (96 files): differing bits
per file, mean pHash 0.12, aHash 0.09, dHash 0.30, wHash 0.00 (before the fast path kept the
photo's span: 0.67, 0.19, 0.72, 0.00); pair agreement 0.998, 0.970, 0.988, 1.000 (a single flipped
aHash bit moves every pair of its group that sat at the threshold, so small sets swing by 0.02).
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import pytest
from PIL import Image

from dedupd.core.algorithms import HASH_METHODS
from dedupd.encoding import encode_file, hashes_of
from dedupd.imaging import DecodedImage, decode_file, transpose_box

THRESHOLD = 10


def _pairs(hashes: dict[str, int]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for a, b in itertools.combinations(sorted(hashes), 2)
            if (hashes[a] ^ hashes[b]).bit_count() <= THRESHOLD}


@pytest.mark.parametrize("method", list(Image.Transpose))
def test_transpose_box_follows_pillow(method: Image.Transpose) -> None:
    size, box = (13, 7), (0, 0, 10, 5)  # a partial span in one corner, as a reduction leaves it
    marked = Image.new("L", size)
    marked.paste(255, box)
    assert transpose_box(box, size, method) == marked.transpose(method).getbbox()


def test_fast_decode_spans_the_photo(tmp_path: Path, dataset) -> None:
    photo = sorted((dataset("exact", "--num-bases", "1", "--megapixels", "2", "--seed", "3") / "images").iterdir())[0]
    exact = decode_file(photo)
    fast = decode_file(photo, fast=True)
    assert fast.box is not None, "a 2 MP photo reduced to >= 256 px leaves a partial last pixel"
    left, upper, right, lower = fast.box
    assert (left, upper) == (0, 0) and fast.width - 1 < right < fast.width and fast.height - 1 < lower < fast.height
    assert right / lower == pytest.approx(exact.width / exact.height)
    # the resized image reads the photo's span: its edge columns match the exact resize's
    small, ref = fast.resized((64, 48)), exact.resized((64, 48))
    assert abs(int(small.getpixel((63, 24))[1]) - int(ref.getpixel((63, 24))[1])) <= 3


def test_fast_hashes_agree_with_exact_on_transformed_photos(dataset) -> None:
    root = dataset("transformed", "--num-bases", "8", "--megapixels", "2", "--transforms", "everyday",
                   "--seed", "7") / "images"
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) >= 80
    exact = {str(p): encode_file(p, HASH_METHODS, exif_transpose=True).hashes for p in files}
    fast = {str(p): encode_file(p, HASH_METHODS, exif_transpose=True, fast=True).hashes for p in files}
    figures = {}
    for m in HASH_METHODS:
        pe, pf = _pairs({k: h[m] for k, h in exact.items()}), _pairs({k: h[m] for k, h in fast.items()})
        bits = [(exact[k][m] ^ fast[k][m]).bit_count() for k in exact]
        figures[m] = (len(pe & pf) / len(pe | pf), statistics.mean(bits), max(bits), len(pe))
    print(figures)
    for m, (agree, mean_bits, max_bits, n_pairs) in figures.items():
        assert n_pairs >= 300, (m, n_pairs)
        assert agree >= 0.96, (m, figures[m])
        assert mean_bits <= 0.4 and max_bits <= 3, (m, figures[m])
    both = sum(f[0] * f[3] for f in figures.values()) / sum(f[3] for f in figures.values())
    assert both >= 0.985, figures


def test_stores_of_earlier_fast_hashes_re_encode(tmp_path: Path) -> None:
    """Fast hashes from before the span fix are not the current ones: such a store's stamp differs
    (it re-encodes), while exact stores keep theirs."""
    from dedupd.daemon.config import config_from_mapping

    def stamp(decode: str) -> str:
        return config_from_mapping({"roots": [str(tmp_path)], "decode": decode}, env={"HOME": str(tmp_path)}).hash_params_id()

    assert stamp("exact") == "v1:decode=exact:exif=1"
    assert stamp("fast") not in ("v1:decode=fast:exif=1", stamp("exact"))



def test_crop_variants_read_the_photo_span(dataset) -> None:
    """wHash crop variants resize the decoded image itself: their centred crop must lie within
    :attr:`DecodedImage.box`. Real photo pixels on a canvas with a wide black margin, the box
    spanning the photo, hash like the photo alone."""
    photo = sorted((dataset("exact", "--num-bases", "1", "--megapixels", "2", "--seed", "3") / "images").iterdir())[0]
    image = decode_file(photo, fast=True)
    keys = ["whash@c90", "whash@c81"]
    canvas = Image.new("RGB", (image.width * 3 // 2, image.height * 3 // 2))
    canvas.paste(image.rgb, (0, 0))
    span = (0.0, 0.0, float(image.width), float(image.height))
    padded = DecodedImage(canvas, canvas.width, canvas.height, image.format, box=span)
    plain = DecodedImage(image.rgb, image.width, image.height, image.format)
    assert hashes_of(padded, keys) == hashes_of(plain, keys)

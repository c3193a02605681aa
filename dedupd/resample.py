"""Pillow's LANCZOS downscale, bit for bit, in a fraction of its time (when numba is installed).

Pillow resizes in two passes: horizontal (every source row to the target width), then vertical,
each in 22-bit fixed point with a rounding to uint8 in between. The horizontal pass reads every
source pixel about six times and is nearly all of the cost: 55-85 ms for a 12 MP photo whatever
the target, so a hash's four targets (8, 9, 32 and 256 wide) cost ~260 ms on top of a ~60 ms
decode. This module computes that pass with the *same* integer coefficients (the same
``precompute_coeffs`` arithmetic, ``math.sin`` as C's ``sin``) and the same exact int32 sums, so
its output is identical; only the order of the work differs: Pillow's RGBX words read in place,
two rows and three channels per coefficient load, which the compiler vectorises. The vertical pass
on the narrow intermediate is reproduced the same way (whole rows scaled and summed), then Pillow
converts the small result to grayscale. Pillow runs the vertical pass first for tall images
(:func:`horizontal_first`); those stay with Pillow.

Measured on a 12 MP JPEG (2829x4242), CPU time per target, one core of a loaded 2-core Xeon
(Pillow's ``resize`` vs this module's two passes):

=========  ==========  ==========
target     Pillow      here
=========  ==========  ==========
32x32      63 ms       14 ms
8x8        54 ms       13 ms
9x8        58 ms       13 ms
256x256    85 ms       23 ms
=========  ==========  ==========

End to end (decode once + four hashes vs the reference's four decodes and resizes, in-process CPU
time on 24 12-MP photos): 3.9x the reference on JPEG, 4.0x on PNG/WebP, hashes identical.

The crop variants' resizes with a ``box`` (:func:`resize_box_rgbx`, from the 256 px copy) take the
same two passes over the rows and columns the box's taps reach, with Pillow's box coefficients: the
bounds and the length are C ``float`` (:func:`box_span`), and Pillow picks the pass order from the
image and target sizes, not the box. On 640 px photos with pHash + dHash and their crops (the
default config), 0.6 ms a resize in Pillow vs 0.23 ms here; with the four-row horizontal pass,
17 % less CPU for a whole ``dedupd scan`` (25.2 -> 21.1 CPU-s for 2,000 files, same hashes).
The hashes take their gray input straight from these passes (:func:`to_gray`, Pillow's ``L``
formula) and the reduced copies stay RGBX words (:func:`to_words`), so no Pillow image is made of
each result: the pHash/dHash resizes with their crops, CPU per file, 640 px 4.6 -> 4.0 ms, 64 px
0.42 -> 0.17 ms (faster than Pillow's resize at every size: a decode worker uses them for all).

Wide targets of small images (up to :data:`dedupd.imaging.COLUMNS_MAX_PIXELS`, 1.5 MP; a width of
at least 1/8 of the image's, :data:`dedupd.imaging.COLUMNS_MIN_RATIO`: the crops' reduced copies)
take their horizontal passes from ONE column-major copy of the image (:func:`column_copy`: row x
holds R, G, B of column x; made once per file, shared by those widths), summed the way the vertical
pass sums rows (:func:`horizontal_passes_rgbx`): each tap adds a whole contiguous column times one
broadcast coefficient, eight taps a sweep over a block of int32 accumulators. The integer sums are
exact, so their order does not change a bit. Horizontal passes of a 640x480 photo, CPU per pass
(the copy: ~0.1-0.3 ms, plus its fresh pages):

=====================================  =============  ================
target width (default config)          words' pass    column-major
=====================================  =============  ================
32 (pHash)                             0.63 ms        0.47 ms
9 (dHash)                              0.59 ms        0.42 ms
341 (the crops' 256 px copy)           1.46 ms        0.73 ms
96 (the dHash crops' 72 px copy)       0.88 ms        0.52 ms
=====================================  =============  ================

The narrow targets gain less than the copy costs: with pHash and dHash alone (``crop: false``) the
copy made the worker 3-9 % slower, so they keep the words' passes (then nothing changes for them).
A decode worker's CPU per file (decode + pHash, dHash and their crop hashes, exact;
``bench/bench_resample.py``, before/after alternated, 4 rounds x 200 files): 640 px JPEGs 6.84 ->
5.57 ms (0.81x; after the decode, 4.72 -> 3.71 ms, 0.79x), hashes identical; ``dedupd scan`` of
2,000 of them (``bench/bench_encode.py --only b``, 3 rounds), CPU of all its processes 11.25 ->
10.43 ms a file (0.93x), 1.08x the files per second; ``crop: false`` and
12 MP photos run the same code as before (1.04x and 1.10x there, inside the noise of an A/A run of
the same checkout: 0.99-1.03x at 640 px, 0.92x at 12 MP). All on a loaded 2-core Xeon (AVX-512).
Camera photos keep the words' passes: there a tap's columns outgrow the cache and the copy costs
about two passes (12 MP: 14 ms a 32 px pass from the words, 17 ms from the copy, plus 10-30 ms for
the copy). Tried and not kept: float64 sums (slower: the conversions), one tap a sweep (the
accumulators' loads and stores), the copy by bands of rows (more calls, no cache gain), the crops'
box passes from a column copy of the reduced copy (5.36 vs 5.35 ms a file), two outputs a sweep
sharing the column loads (8 % off the passes, not worth the code). What is left is the int32
multiply itself (``vpmulld``, two micro-ops for 8 lanes at the 256-bit width LLVM picks).

pillow-simd was considered and rejected: its SIMD resampler stores coefficients as int16 with a
precision chosen per call (``coefs_precision`` <= 15 bits vs Pillow's 22), so its output is not
bit-identical to Pillow's, and it replaces Pillow in the environment.

numba is optional (``pip install 'dedupd[speed]'``): without it :func:`available` is False and
callers use Pillow's resize, which gives the same values more slowly.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images (libImaging/Resample.c)
LANCZOS_SUPPORT = 3.0

logger = logging.getLogger(__name__)

_kernels: dict[str, Any] | None = None
_state: dict[str, Any] = {"checked": False, "ok": False, "error": None}


def available() -> bool:
    """True when numba is installed and the compiled passes load (built on first use, ~10 s, then
    loaded from numba's cache next to the package or in the user's cache folder; where neither is
    writable, False with one warning)."""
    global _kernels
    if not _state["checked"]:
        _state["checked"] = True
        try:
            _kernels = _build()
        except ImportError:
            _state["ok"] = False
        except Exception as exc:  # noqa: BLE001 - a numba/LLVM problem: Pillow gives the same values
            _state["ok"], _state["error"] = False, f"{type(exc).__name__}: {exc}"
            logger.warning("accelerated resize unavailable, using Pillow's (same hashes, slower): %s",
                           _state["error"])
        else:
            _state["ok"] = True
    return bool(_state["ok"])


def horizontal_first(width: int, height: int, to_width: int, to_height: int) -> bool:
    """True when Pillow resizes ``width x height`` to ``to_width x to_height`` horizontal pass
    first, and that pass is a downscale (the case :func:`horizontal_pass` reproduces).

    Pillow runs the vertical pass first when the height shrinks by more than twice as many
    pixels as the width (a tall image to a small square: height >= 2 x width - side + 1); the
    rule was established by comparing both orders with Pillow's own output on random images and
    is checked by the tests at its boundary.
    """
    return to_width < width and height - to_height <= 2 * (width - to_width)


def _lanczos(x: float) -> float:
    # sinc(x) * sinc(x / 3) on [-3, 3), as Pillow's lanczos_filter (same libm sin)
    if not -3.0 <= x < 3.0:
        return 0.0
    a = 1.0 if x == 0.0 else math.sin(x * math.pi) / (x * math.pi)
    y = x / 3
    b = 1.0 if y == 0.0 else math.sin(y * math.pi) / (y * math.pi)
    return a * b


@lru_cache(maxsize=256)
def coefficients(in_size: int, out_size: int, span: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`reference_coefficients`, compiled when numba is there (~150 ms of Python per photo
    size otherwise; photos come in many sizes). Identical values: the tests compare both."""
    if not available():
        return reference_coefficients(in_size, out_size, span)
    in0, extent = span if span is not None else (0.0, float(in_size))
    ksize = int(math.ceil(LANCZOS_SUPPORT * max(extent / out_size, 1.0))) * 2 + 1
    coefs = np.zeros((out_size, ksize), np.int32)
    bounds = np.zeros((out_size, 2), np.int32)
    _kernel("coefficients")(in_size, in0, extent, out_size, bounds, coefs)
    return bounds, coefs


def reference_coefficients(in_size: int, out_size: int,
                           span: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's LANCZOS taps from ``in_size`` to ``out_size`` samples: ``(bounds, coefs)``.

    ``span`` is the ``(start, length)`` of the source range resized (a ``box`` side, in the C
    floats Pillow parses it into: see :func:`box_span`); None: all of it.
    ``bounds[j] = (first source index, tap count)``; ``coefs[j, :count]`` are the int32 weights,
    normalised to sum to ``2**PRECISION_BITS`` and rounded half away from zero, as Pillow's
    ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` do in double precision.
    """
    in0, extent = span if span is not None else (0.0, float(in_size))
    scale = extent / out_size
    filterscale = max(scale, 1.0)
    support = LANCZOS_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    one = float(1 << PRECISION_BITS)
    coefs = np.zeros((out_size, ksize), np.int32)
    bounds = np.zeros((out_size, 2), np.int32)
    for j in range(out_size):
        center = in0 + (j + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - xmin
        w = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(count)]
        total = 0.0
        for v in w:  # sequential, as the C loop sums
            total += v
        for x, v in enumerate(w):
            if total != 0.0:
                v /= total
            coefs[j, x] = int(-0.5 + v * one) if v < 0 else int(0.5 + v * one)
        bounds[j] = (xmin, count)
    return bounds, coefs


def box_span(a: float, b: float) -> tuple[float, float]:
    """A ``box`` side from ``a`` to ``b`` as Pillow's C code sees it: ``(start, length)``, each
    bound rounded to a C ``float`` and the length subtracted in ``float`` too."""
    start, end = np.float32(a), np.float32(b)
    return float(start), float(end - start)


#: the compiled passes (functions of :mod:`dedupd.resample_kernels`)
KERNELS = ("planes_rgbx", "planes_rgb", "horizontal", "horizontal_rgbx", "vertical", "coefficients", "gray",
           "pack_rgbx", "columns_rgbx", "horizontal_cols")


def _build() -> dict[str, Any]:
    from dedupd import resample_kernels as k

    return {name: getattr(k, name) for name in KERNELS}


def load_hot_passes() -> bool:
    """Load (or build) now the passes a decode worker runs on every file (~0.3 s from numba's cache,
    the first call ~1 s: numba itself); False when numba is not installed."""
    if not available():
        return False
    coefficients(64, 32)
    words = np.zeros((2, 4), np.uint32)
    mid = horizontal_pass_rgbx(words, 2)
    to_gray(vertical_pass(mid, 1))
    to_words(mid)
    horizontal_passes_rgbx(words, [2])
    return True


def build_all() -> bool:
    """Build every pass into numba's cache (``make install``; a decode pool's server when
    :func:`cache_warm` is False), the rarely used ones too, so no decode builds one."""
    if not load_hot_passes():
        return False
    pixels = np.zeros((2, 4, 4), np.uint8)
    horizontal_pass(rgb_planes(pixels), 2)  # planes_rgbx, horizontal
    rgb_planes(pixels[:, :, :3])  # planes_rgb
    return True


def cache_warm(package: str | None = None) -> bool:
    """Whether numba's cache next to this package (or ``package``, a folder) holds every compiled
    pass, each written after the kernels' source was: loading them then takes ~0.3 s rather than a
    ~10 s build. Checked from the file names alone, without importing numba; False also where the
    cache is elsewhere (the user's cache folder, when the package folder is read-only)."""
    source = os.path.join(package or os.path.dirname(os.path.abspath(__file__)), "resample_kernels.py")
    cache = os.path.join(os.path.dirname(source), "__pycache__")
    tag = f"py{sys.version_info.major}{sys.version_info.minor}.nbi"
    try:
        written = os.stat(source).st_mtime
        stamps = {entry.name: entry.stat().st_mtime for entry in os.scandir(cache)
                  if entry.name.startswith("resample_kernels.") and entry.name.endswith(tag)}
    except OSError:
        return False
    return all(any(name.partition("-")[0] == f"resample_kernels.{kernel}" and t >= written
                   for name, t in stamps.items()) for kernel in KERNELS)


def _kernel(name: str) -> Any:
    if not available() or _kernels is None:
        raise RuntimeError(f"the accelerated resize is unavailable ({_state['error'] or 'numba is not installed'})")
    return _kernels[name]


def horizontal_pass_rgbx(words: np.ndarray, width: int) -> np.ndarray:
    """:func:`horizontal_pass` of (H, W) uint32 RGBX words (Pillow's own pixel layout)."""
    h, w = words.shape
    bounds, coefs = coefficients(w, width)
    out = np.empty((h, width, 3), np.uint8)
    _kernel("horizontal_rgbx")(words, bounds, coefs, out)
    return out


def column_copy(words: np.ndarray) -> np.ndarray:
    """The (H, W) RGBX words column by column, without the X byte: (W, >= 3H) uint8 whose row x
    holds R, G, B of pixels (x, 0), (x, 1), ... (what :func:`horizontal_passes_rgbx` sums)."""
    h, w = words.shape
    cols = np.empty((w, (h + 7) // 8 * 3), np.uint64)
    _kernel("columns_rgbx")(words, cols)
    return cols.view(np.uint8)


def horizontal_passes_rgbx(words: np.ndarray, widths: Iterable[int],
                           cols: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """:func:`horizontal_pass_rgbx` of (H, W) RGBX words to each of ``widths``, the same values, from
    one column-major copy of the image shared by every width (``cols``, the :func:`column_copy` of
    ``words``; None: made here): each pass then sums whole columns, as the vertical pass sums rows
    (contiguous, vectorised loads, eight taps a sweep). Faster than :func:`horizontal_pass_rgbx` for
    wide targets of small images (see the table above): on a camera photo the copy alone costs about
    two of its passes."""
    h, w = words.shape
    cols = column_copy(words) if cols is None else cols
    horizontal = _kernel("horizontal_cols")
    mids = {}
    for width in dict.fromkeys(widths):
        mids[width] = np.empty((h, width, 3), np.uint8)
        horizontal(cols, *coefficients(w, width), mids[width])
    return mids


def vertical_pass(mid: np.ndarray, height: int) -> np.ndarray:
    """Pillow's LANCZOS vertical pass of (H, w, 3) uint8 to ``height`` rows: (height, w, 3).

    With :func:`horizontal_pass` before it, equal to ``Image.resize((w, height), LANCZOS)`` of the
    original image whenever :func:`horizontal_first` holds.
    """
    h, w, _ = mid.shape
    if height == h:
        return mid
    bounds, coefs = coefficients(h, height)
    out = np.empty((height, w, 3), np.uint8)
    _kernel("vertical")(np.ascontiguousarray(mid).reshape(h, w * 3), bounds, coefs, out.reshape(height, w * 3))
    return out


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (h, w) uint8, the values of Pillow's ``convert("L")`` (requires :func:`available`)."""
    h, w, _ = rgb.shape
    out = np.empty((h, w), np.uint8)
    _kernel("gray")(np.ascontiguousarray(rgb).reshape(h, w * 3), out)
    return out


def to_words(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> (h, w) uint32 RGBX words, Pillow's own layout (what
    :func:`horizontal_pass_rgbx` and :func:`resize_box_rgbx` read; requires :func:`available`)."""
    h, w, _ = rgb.shape
    out = np.empty((h, w), np.uint32)
    _kernel("pack_rgbx")(np.ascontiguousarray(rgb).reshape(h, w * 3), out)
    return out


def rgb_planes(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or (H, W, 4) RGBX as Pillow stores it, -> (3, H, W) planes."""
    h, w, step = pixels.shape
    out = np.empty((3, h, w), np.uint8)
    if step == 4 and sys.byteorder == "little":
        _kernel("planes_rgbx")(np.ascontiguousarray(pixels).view(np.uint32).reshape(h, w), out)
    else:
        _kernel("planes_rgb")(np.ascontiguousarray(pixels[:, :, :3]).reshape(h, w * 3), out)
    return out


def horizontal_pass(planes: np.ndarray, width: int) -> np.ndarray:
    """Pillow's LANCZOS horizontal pass of (3, H, W) planes to ``width``: (H, width, 3) uint8.

    Identical to the intermediate image ``Image.resize((width, h), LANCZOS)`` computes before its
    vertical pass (requires :func:`available`).
    """
    _, h, w = planes.shape
    bounds, coefs = coefficients(w, width)
    out = np.empty((h, width, 3), np.uint8)
    kernel = _kernel("horizontal")
    for c in range(3):
        kernel(planes[c], bounds, coefs, out, c)
    return out


def box_applies(width: int, height: int, size: tuple[int, int], box: tuple[float, float, float, float]) -> bool:
    """True when :func:`resize_box_rgbx` reproduces ``Image.resize(size, LANCZOS, box=box)`` of a
    ``width x height`` RGB image: a box strictly inside the image on every side (both passes
    needed), downscaled in width, in the horizontal-first order (:func:`horizontal_first`, for the
    image and for the box alike)."""
    left, top, right, bottom = box
    bw, bh = right - left, bottom - top
    return (0 < left < right < width and 0 < top < bottom < height and size[0] < bw
            and horizontal_first(width, height, *size) and bh - size[1] <= 2 * (bw - size[0]))


def resize_box_rgbx(words: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """``Image.resize(size, LANCZOS, box=box)`` of (H, W) RGBX words, as (h, w, 3) uint8, where
    :func:`box_applies`: the horizontal pass over the rows the vertical pass reads, then that pass."""
    h, w = words.shape
    hb, hc = coefficients(w, size[0], box_span(box[0], box[2]))
    vb, vc = coefficients(h, size[1], box_span(box[1], box[3]))
    first, last = int(vb[0, 0]), int(vb[-1, 0] + vb[-1, 1])
    mid = np.empty((last - first, size[0], 3), np.uint8)
    _kernel("horizontal_rgbx")(words[first:last], hb, hc, mid)
    shifted = vb.copy()
    shifted[:, 0] -= first
    out = np.empty((size[1], size[0], 3), np.uint8)
    _kernel("vertical")(mid.reshape(last - first, size[0] * 3), shifted, vc, out.reshape(size[1], size[0] * 3))
    return out

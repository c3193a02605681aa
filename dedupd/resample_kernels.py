"""The compiled loops of :mod:`dedupd.resample` (imported only when numba is installed).

Module-level functions, so that numba's on-disk cache finds them again in every new process
(functions built inside another function are compiled afresh each time: seconds per worker).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

PRECISION_BITS = 22  # dedupd.resample.PRECISION_BITS: Pillow's fixed point for 8-bit images


@njit(cache=True, nogil=True, boundscheck=False)
def planes_rgbx(pixels: np.ndarray, out: np.ndarray) -> None:
    # (H, W) uint32 RGBX words (little-endian: R in the low byte) -> (3, H, W) planes
    o0, o1, o2 = out[0], out[1], out[2]
    for y in range(pixels.shape[0]):
        r = pixels[y]
        a, b, c = o0[y], o1[y], o2[y]
        for x in range(pixels.shape[1]):
            v = r[x]
            a[x] = v & 0xFF
            b[x] = (v >> 8) & 0xFF
            c[x] = (v >> 16) & 0xFF


@njit(cache=True, nogil=True, boundscheck=False)
def planes_rgb(pixels: np.ndarray, out: np.ndarray) -> None:
    # (H, W * 3) interleaved RGB -> (3, H, W) planes
    o0, o1, o2 = out[0], out[1], out[2]
    for y in range(pixels.shape[0]):
        r = pixels[y]
        a, b, c = o0[y], o1[y], o2[y]
        for x in range(out.shape[2]):
            a[x] = r[3 * x]
            b[x] = r[3 * x + 1]
            c[x] = r[3 * x + 2]


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def clip8(s: Any) -> Any:
    s >>= PRECISION_BITS
    return 0 if s < 0 else (255 if s > 255 else s)


@njit(cache=True, nogil=True, boundscheck=False)
def horizontal(plane: np.ndarray, bounds: np.ndarray, coefs: np.ndarray, out: np.ndarray,
               channel: int) -> None:
    # out[y, j, channel] = clip8(2**21 + sum(plane[y, xmin + i] * coefs[j, i])), exact int32;
    # four rows per coefficient load; slices keep the inner loops free of index checks
    h = plane.shape[0]
    half = np.int32(1 << (PRECISION_BITS - 1))
    for y in range(0, h - 3, 4):
        r0, r1, r2, r3 = plane[y], plane[y + 1], plane[y + 2], plane[y + 3]
        for j in range(coefs.shape[0]):
            xmin, n = bounds[j, 0], bounds[j, 1]
            k = coefs[j]
            a0, a1, a2, a3 = r0[xmin:xmin + n], r1[xmin:xmin + n], r2[xmin:xmin + n], r3[xmin:xmin + n]
            s0 = s1 = s2 = s3 = half
            for i in range(n):
                c = k[i]
                s0 = np.int32(s0 + np.int32(np.int32(a0[i]) * c))
                s1 = np.int32(s1 + np.int32(np.int32(a1[i]) * c))
                s2 = np.int32(s2 + np.int32(np.int32(a2[i]) * c))
                s3 = np.int32(s3 + np.int32(np.int32(a3[i]) * c))
            out[y, j, channel] = clip8(s0)
            out[y + 1, j, channel] = clip8(s1)
            out[y + 2, j, channel] = clip8(s2)
            out[y + 3, j, channel] = clip8(s3)
    for y in range(h - h % 4, h):
        r = plane[y]
        for j in range(coefs.shape[0]):
            xmin, n = bounds[j, 0], bounds[j, 1]
            k = coefs[j]
            a = r[xmin:xmin + n]
            s = half
            for i in range(n):
                s = np.int32(s + np.int32(np.int32(a[i]) * k[i]))
            out[y, j, channel] = clip8(s)


@njit(cache=True, nogil=True, boundscheck=False)
def horizontal_rgbx(words: np.ndarray, bounds: np.ndarray, coefs: np.ndarray,
                    out: np.ndarray) -> None:
    # the same sums read straight from Pillow's RGBX words (R in the low byte): four rows at a
    # time (the last rows repeated at the bottom edge, their sums not stored), three channels
    # each, no de-interleaved copy of the image first; 10-15 % faster than two rows
    h = words.shape[0]
    half = np.int32(1 << (PRECISION_BITS - 1))
    for y in range(0, h, 4):
        r0, r1, r2, r3 = words[y], words[min(y + 1, h - 1)], words[min(y + 2, h - 1)], words[min(y + 3, h - 1)]
        for j in range(coefs.shape[0]):
            xmin, n = bounds[j, 0], bounds[j, 1]
            k = coefs[j]
            a0, a1, a2, a3 = r0[xmin:xmin + n], r1[xmin:xmin + n], r2[xmin:xmin + n], r3[xmin:xmin + n]
            s0 = s1 = s2 = t0 = t1 = t2 = u0 = u1 = u2 = w0 = w1 = w2 = half
            for i in range(n):
                c = k[i]
                v = a0[i]
                s0 = np.int32(s0 + np.int32(np.int32(v & 0xFF) * c))
                s1 = np.int32(s1 + np.int32(np.int32((v >> 8) & 0xFF) * c))
                s2 = np.int32(s2 + np.int32(np.int32((v >> 16) & 0xFF) * c))
                v = a1[i]
                t0 = np.int32(t0 + np.int32(np.int32(v & 0xFF) * c))
                t1 = np.int32(t1 + np.int32(np.int32((v >> 8) & 0xFF) * c))
                t2 = np.int32(t2 + np.int32(np.int32((v >> 16) & 0xFF) * c))
                v = a2[i]
                u0 = np.int32(u0 + np.int32(np.int32(v & 0xFF) * c))
                u1 = np.int32(u1 + np.int32(np.int32((v >> 8) & 0xFF) * c))
                u2 = np.int32(u2 + np.int32(np.int32((v >> 16) & 0xFF) * c))
                v = a3[i]
                w0 = np.int32(w0 + np.int32(np.int32(v & 0xFF) * c))
                w1 = np.int32(w1 + np.int32(np.int32((v >> 8) & 0xFF) * c))
                w2 = np.int32(w2 + np.int32(np.int32((v >> 16) & 0xFF) * c))
            out[y, j, 0], out[y, j, 1], out[y, j, 2] = clip8(s0), clip8(s1), clip8(s2)
            if y + 1 < h:
                out[y + 1, j, 0], out[y + 1, j, 1], out[y + 1, j, 2] = clip8(t0), clip8(t1), clip8(t2)
            if y + 2 < h:
                out[y + 2, j, 0], out[y + 2, j, 1], out[y + 2, j, 2] = clip8(u0), clip8(u1), clip8(u2)
            if y + 3 < h:
                out[y + 3, j, 0], out[y + 3, j, 1], out[y + 3, j, 2] = clip8(w0), clip8(w1), clip8(w2)


@njit(cache=True, nogil=True, boundscheck=False)
def columns_rgbx(words: np.ndarray, out: np.ndarray) -> None:
    # (h, W) RGBX words (R in the low byte) -> (W, >= ceil(h / 8) * 3) uint64 whose bytes are the
    # image column by column: byte 3 * y + c of row x is channel c of pixel (x, y). Eight rows
    # at a time, three 8-byte stores per column (rows past h repeat the last; never read)
    h, w = words.shape
    b24, b16, b8 = np.uint64(24), np.uint64(16), np.uint64(8)
    b32, b40, b48, b56 = np.uint64(32), np.uint64(40), np.uint64(48), np.uint64(56)
    for y0 in range(0, h, 8):
        r0, r1 = words[y0], words[min(y0 + 1, h - 1)]
        r2, r3 = words[min(y0 + 2, h - 1)], words[min(y0 + 3, h - 1)]
        r4, r5 = words[min(y0 + 4, h - 1)], words[min(y0 + 5, h - 1)]
        r6, r7 = words[min(y0 + 6, h - 1)], words[min(y0 + 7, h - 1)]
        q = 3 * (y0 // 8)
        for x in range(w):
            a0, a1 = np.uint64(r0[x] & 0xFFFFFF), np.uint64(r1[x] & 0xFFFFFF)
            a2, a3 = np.uint64(r2[x] & 0xFFFFFF), np.uint64(r3[x] & 0xFFFFFF)
            a4, a5 = np.uint64(r4[x] & 0xFFFFFF), np.uint64(r5[x] & 0xFFFFFF)
            a6, a7 = np.uint64(r6[x] & 0xFFFFFF), np.uint64(r7[x] & 0xFFFFFF)
            o = out[x]
            o[q] = a0 | (a1 << b24) | (a2 << b48)
            o[q + 1] = (a2 >> b16) | (a3 << b8) | (a4 << b32) | (a5 << b56)
            o[q + 2] = (a5 >> b8) | (a6 << b16) | (a7 << b40)


@njit(cache=True, nogil=True, boundscheck=False)
def horizontal_cols(cols: np.ndarray, bounds: np.ndarray, coefs: np.ndarray, out: np.ndarray) -> None:
    # the sums of horizontal_rgbx over the column-major bytes of columns_rgbx (uint8 (W, >= 3h)):
    # out[y, j, c] = clip8(2**21 + sum_i cols[xmin + i, 3y + c] * coefs[j, i]) for the h rows of
    # out, computed as the vertical pass does (whole column rows scaled and summed, eight taps a
    # sweep over a block of the accumulators: contiguous loads, one broadcast coefficient each)
    tw = coefs.shape[0]
    m = 3 * out.shape[0]
    block = 1536
    acc = np.empty(block, np.int32)
    tmp = np.empty(block, np.uint8)
    half = np.int32(1 << (PRECISION_BITS - 1))
    o = out.reshape(out.shape[0], tw * 3)
    for m0 in range(0, m, block):
        m1 = min(m0 + block, m)
        nb = m1 - m0
        for j in range(tw):
            xmin, n = bounds[j, 0], bounds[j, 1]
            k = coefs[j]
            for x in range(nb):
                acc[x] = half
            i = 0
            while i + 8 <= n:
                c0, c1, c2, c3, c4, c5, c6, c7 = k[i], k[i + 1], k[i + 2], k[i + 3], k[i + 4], k[i + 5], k[i + 6], k[i + 7]
                r0, r1 = cols[xmin + i, m0:m1], cols[xmin + i + 1, m0:m1]
                r2, r3 = cols[xmin + i + 2, m0:m1], cols[xmin + i + 3, m0:m1]
                r4, r5 = cols[xmin + i + 4, m0:m1], cols[xmin + i + 5, m0:m1]
                r6, r7 = cols[xmin + i + 6, m0:m1], cols[xmin + i + 7, m0:m1]
                for x in range(nb):
                    acc[x] = np.int32(acc[x] + np.int32(np.int32(r0[x]) * c0) + np.int32(np.int32(r1[x]) * c1)
                                      + np.int32(np.int32(r2[x]) * c2) + np.int32(np.int32(r3[x]) * c3)
                                      + np.int32(np.int32(r4[x]) * c4) + np.int32(np.int32(r5[x]) * c5)
                                      + np.int32(np.int32(r6[x]) * c6) + np.int32(np.int32(r7[x]) * c7))
                i += 8
            if i + 4 <= n:
                c0, c1, c2, c3 = k[i], k[i + 1], k[i + 2], k[i + 3]
                r0, r1 = cols[xmin + i, m0:m1], cols[xmin + i + 1, m0:m1]
                r2, r3 = cols[xmin + i + 2, m0:m1], cols[xmin + i + 3, m0:m1]
                for x in range(nb):
                    acc[x] = np.int32(acc[x] + np.int32(np.int32(r0[x]) * c0) + np.int32(np.int32(r1[x]) * c1)
                                      + np.int32(np.int32(r2[x]) * c2) + np.int32(np.int32(r3[x]) * c3))
                i += 4
            while i < n:
                c = k[i]
                r0 = cols[xmin + i, m0:m1]
                for x in range(nb):
                    acc[x] = np.int32(acc[x] + np.int32(np.int32(r0[x]) * c))
                i += 1
            for x in range(nb):
                tmp[x] = clip8(acc[x])
            oo = 3 * j
            for y in range(nb // 3):
                r = o[m0 // 3 + y]
                r[oo], r[oo + 1], r[oo + 2] = tmp[3 * y], tmp[3 * y + 1], tmp[3 * y + 2]


@njit(cache=True, nogil=True, boundscheck=False)
def vertical(rows: np.ndarray, bounds: np.ndarray, coefs: np.ndarray,
             out: np.ndarray) -> None:
    # Pillow's vertical pass over (H, w * 3) interleaved rows: whole rows scaled and summed
    m = rows.shape[1]
    acc = np.empty(m, np.int32)
    half = np.int32(1 << (PRECISION_BITS - 1))
    for yy in range(coefs.shape[0]):
        ymin, n = bounds[yy, 0], bounds[yy, 1]
        k = coefs[yy]
        for x in range(m):
            acc[x] = half
        for i in range(n):
            c = k[i]
            row = rows[ymin + i]
            for x in range(m):
                acc[x] = np.int32(acc[x] + np.int32(np.int32(row[x]) * c))
        o = out[yy]
        for x in range(m):
            o[x] = clip8(acc[x])


@njit(cache=True, nogil=True)
def lanczos(x: float) -> float:
    # sinc(x) * sinc(x / 3) on [-3, 3): libm's sin, as Pillow's lanczos_filter
    if not (-3.0 <= x < 3.0):
        return 0.0
    a = 1.0 if x == 0.0 else math.sin(x * math.pi) / (x * math.pi)
    y = x / 3
    b = 1.0 if y == 0.0 else math.sin(y * math.pi) / (y * math.pi)
    return a * b


@njit(cache=True, nogil=True)
def coefficients(in_size: int, in0: float, extent: float, out_size: int, bounds: np.ndarray,
                 coefs: np.ndarray) -> None:
    # dedupd.resample.coefficients (the reference, in Python), compiled: same double arithmetic
    scale = extent / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    ss = 1.0 / filterscale
    one = float(1 << PRECISION_BITS)
    w = np.empty(coefs.shape[1], np.float64)
    for j in range(out_size):
        center = in0 + (j + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - xmin
        total = 0.0
        for x in range(count):
            w[x] = lanczos((x + xmin - center + 0.5) * ss)
            total += w[x]
        for x in range(count):
            v = w[x] / total if total != 0.0 else w[x]
            coefs[j, x] = int(-0.5 + v * one) if v < 0 else int(0.5 + v * one)
        bounds[j, 0] = xmin
        bounds[j, 1] = count


@njit(cache=True, nogil=True, boundscheck=False)
def gray(rgb: np.ndarray, out: np.ndarray) -> None:
    # (h, w * 3) interleaved RGB -> (h, w) L as Pillow converts it (ITU-R 601-2 luma, 16-bit fixed
    # point, rounded): (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16
    for y in range(out.shape[0]):
        r = rgb[y]
        o = out[y]
        for x in range(out.shape[1]):
            o[x] = (np.uint32(r[3 * x]) * 19595 + np.uint32(r[3 * x + 1]) * 38470
                    + np.uint32(r[3 * x + 2]) * 7471 + 0x8000) >> 16


@njit(cache=True, nogil=True, boundscheck=False)
def pack_rgbx(rgb: np.ndarray, out: np.ndarray) -> None:
    # (h, w * 3) interleaved RGB -> (h, w) uint32 RGBX words as Pillow stores them (R in the low byte)
    for y in range(out.shape[0]):
        r = rgb[y]
        o = out[y]
        for x in range(out.shape[1]):
            o[x] = (np.uint32(r[3 * x]) | (np.uint32(r[3 * x + 1]) << 8) | (np.uint32(r[3 * x + 2]) << 16)
                    | np.uint32(0xFF000000))

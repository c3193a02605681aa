"""Every requested hash from ONE decode of a file: shared by the library API and the daemon."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from dedupd.core import variants
from dedupd.core.algorithms import HASH_METHODS, TARGET_SIZES, hash_array
from dedupd.imaging import DecodedImage, decode_file, resize_box_gray, supported_formats


def hashes_of(image: DecodedImage, methods: Iterable[str] = HASH_METHODS) -> dict[str, int]:
    """Hash ``image`` with each method; each method resizes the same decoded RGB image.

    A name ``"<method>@<variant>"`` (see :mod:`dedupd.core.variants`) hashes a centred crop or a
    flipped/rotated version of the image instead; plain names give the imagededup hashes.
    """
    methods = list(methods)
    out: dict[str, int] = {}
    wanted: list[tuple[int, int]] = []  # every target size, resized together (the fast path shares passes)
    for name in methods:
        method, variant = variants.split_key(name)
        if method in TARGET_SIZES and (variant is None or variant not in variants.CROP_SCALES):
            w, h = TARGET_SIZES[method]
            wanted.append((h, w) if variant is not None and variants.transposes(variant) else (w, h))
    grays = image.grays(wanted)  # one resize per target size, shared by variants

    def gray(size: tuple[int, int]) -> np.ndarray:
        if size not in grays:
            grays[size] = image.gray(size)
        return grays[size]

    smaller: dict[int, Image.Image | np.ndarray] = {}  # crop variants resize from one reduced copy, not the full image

    def reduced(side: int) -> Image.Image | np.ndarray:
        if side not in smaller:
            scale = side / min(image.width, image.height)
            smaller[side] = image.source() if scale >= 1 else image.reduced(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        return smaller[side]

    for name in methods:
        method, variant = variants.split_key(name)
        if method not in TARGET_SIZES or variant is None:
            out[name] = hash_array(method, gray(TARGET_SIZES[method]) if method in TARGET_SIZES else np.zeros(0))
            continue
        w, h = TARGET_SIZES[method]
        if variant in variants.CROP_SCALES:
            src = reduced(8 * max(w, h))  # an RGB image, or its RGBX words (see DecodedImage.reduced)
            sw, sh = (src.shape[1], src.shape[0]) if isinstance(src, np.ndarray) else src.size
            box = variants.crop_box(sw, sh, variant)
            if src is image.rgb and image.box is not None:  # (fast decode) the crop of the photo's span
                x0, y0, x1, y1 = image.box
                sx, sy = (x1 - x0) / sw, (y1 - y0) / sh
                box = (x0 + box[0] * sx, y0 + box[1] * sy, x0 + box[2] * sx, y0 + box[3] * sy)
            out[name] = hash_array(method, resize_box_gray(src, (w, h), box))
        else:
            base = gray((h, w)) if variants.transposes(variant) else gray((w, h))
            out[name] = hash_array(method, variants.apply_dihedral(base, variant))
    return out


@dataclass(frozen=True)
class FileEncoding:
    """What one decode of a file yields: pixel size, format and the requested hashes (ints)."""

    width: int
    height: int
    format: str | None
    hashes: dict[str, int] = field(default_factory=dict)


def encode_file(
    path: str | os.PathLike[str],
    methods: Iterable[str] = HASH_METHODS,
    *,
    exif_transpose: bool = False,
    fast: bool = False,
) -> FileEncoding:
    """Decode ``path`` once and compute every requested hash (the daemon's formats, HEIF/AVIF too).

    Raises:
        ImageDecodeError: the file cannot be decoded (see :func:`dedupd.imaging.decode_file`).
    """
    image = decode_file(path, exif_transpose=exif_transpose, fast=fast, formats=supported_formats())
    return FileEncoding(image.width, image.height, image.format, hashes_of(image, methods))

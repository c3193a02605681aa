"""Every requested hash from ONE decode of a file: shared by the library API and the daemon."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from dedupd.core.algorithms import HASH_METHODS, TARGET_SIZES, hash_array
from dedupd.imaging import DecodedImage, decode_file


def hashes_of(image: DecodedImage, methods: Iterable[str] = HASH_METHODS) -> dict[str, int]:
    """Hash ``image`` with each method; each method resizes the same decoded RGB image."""
    methods = list(methods)
    grays = image.grays(TARGET_SIZES[m] for m in methods)
    return {m: hash_array(m, grays[TARGET_SIZES[m]]) for m in methods}


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
    """Decode ``path`` once and compute every requested hash.

    Raises:
        ImageDecodeError: the file cannot be decoded (see :func:`dedupd.imaging.decode_file`).
    """
    image = decode_file(path, exif_transpose=exif_transpose, fast=fast)
    return FileEncoding(image.width, image.height, image.format, hashes_of(image, methods))

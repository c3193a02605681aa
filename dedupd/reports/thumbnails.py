"""Small JPEG thumbnails for the HTML report, one per content digest, generated once.

A thumbnail is ``<cache_dir>/<digest hex>.jpg`` (at most ``size`` px on its longer side). The
original is only ever opened for reading. A file that cannot be decoded gets a ``<digest>.err``
marker instead, so it is not retried on every report, and the report shows a placeholder.
Writes are atomic (temp file + rename), so a reader or a concurrent writer never sees half a JPEG.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable

from PIL import Image, ImageOps

THUMB_SIZE = 160
THUMB_EXT = ".jpg"


def thumb_name(digest: bytes | str) -> str:
    """File name of the thumbnail of ``digest`` (bytes or hex)."""
    return (digest.hex() if isinstance(digest, bytes) else digest) + THUMB_EXT


def make_thumbnail(src: str, dest: str, size: int = THUMB_SIZE) -> bool:
    """Write a ``size``-px JPEG of ``src`` to ``dest`` atomically; False if ``src`` cannot be decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(src) as img:
                img.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale (fast)
                img = ImageOps.exif_transpose(img)
                img.thumbnail((size, size), Image.Resampling.LANCZOS)
                if img.mode not in ("RGB", "L"):
                    img = img.convert("RGBA").convert("RGB")  # drop alpha, as the decoders do
                folder = os.path.dirname(dest)
                fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=THUMB_EXT, dir=folder)
                try:
                    with os.fdopen(fd, "wb") as f:
                        img.save(f, "JPEG", quality=78, optimize=True)
                    os.replace(tmp, dest)
                except BaseException:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                    raise
        return True
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, MemoryError):
        return False


def ensure_thumbnail(src: str, digest: bytes | str, cache_dir: str, size: int = THUMB_SIZE) -> str | None:
    """Name of the cached thumbnail of ``digest`` (made from ``src`` if missing), or None on decode error."""
    name = thumb_name(digest)
    dest = os.path.join(cache_dir, name)
    if os.path.isfile(dest):
        return name
    err = dest[: -len(THUMB_EXT)] + ".err"
    if os.path.exists(err):
        return None
    os.makedirs(cache_dir, exist_ok=True)
    if make_thumbnail(src, dest, size):
        return name
    try:
        with open(err, "w"):
            pass
    except OSError:
        pass
    return None


def ensure_thumbnails(items: Iterable[tuple[str, bytes | str]], cache_dir: str, size: int = THUMB_SIZE,
                      workers: int | None = None) -> dict[str, str | None]:
    """``{path: thumbnail file name or None}`` for ``(path, digest)`` pairs; one decode per digest."""
    by_digest: dict[str, str] = {}
    paths: dict[str, str] = {}
    for path, digest in items:
        hx = digest.hex() if isinstance(digest, bytes) else digest
        paths[path] = hx
        if hx not in by_digest or not os.path.exists(by_digest[hx]):
            by_digest[hx] = path
    results: dict[str, str | None] = {}
    todo = list(by_digest.items())
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if workers > 1 and len(todo) > 16:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:  # PIL releases the GIL while decoding
            for hx, name in zip([h for h, _ in todo],
                                ex.map(lambda t: ensure_thumbnail(t[1], t[0], cache_dir, size), todo)):
                results[hx] = name
    else:
        for hx, src in todo:
            results[hx] = ensure_thumbnail(src, hx, cache_dir, size)
    return {p: results[hx] for p, hx in paths.items()}

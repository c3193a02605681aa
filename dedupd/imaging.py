"""Decoding image files into the arrays the encoders take: the only module that calls PIL's codecs.

The default ("exact") path reproduces imagededup's preprocessing step by step, which is what makes
hashes identical to the reference for the same file:

1. open, and refuse formats outside the whitelist;
2. any mode other than RGB is converted to RGBA and then to RGB (alpha is dropped, not composited);
3. per method, resize the full RGB image with LANCZOS to the method's size;
4. *then* convert to grayscale ("L").

EXIF orientation is ignored there, as in the reference. ``exif_transpose=True`` and ``fast=True``
(JPEG DCT-domain downscaling before the resize) are dedupd extensions for the daemon; they change
hashes slightly and are never on in the imagededup-compatible API by default.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dedupd.errors import ImageDecodeError

#: Formats imagededup accepts (PIL's names; PGM and PBM files report themselves as PPM).
BASE_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "BMP", "MPO", "PPM", "TIFF", "GIF", "WEBP"})

#: File-name extensions the directory walkers and the daemon consider images.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".mpo", ".ppm", ".pgm", ".pbm", ".pnm",
     ".tif", ".tiff", ".gif", ".webp", ".heic", ".heif", ".avif"}
)

_heif_checked = False
_extra_formats: frozenset[str] = frozenset()


def supported_formats() -> frozenset[str]:
    """The whitelist, plus HEIF/AVIF when ``pillow-heif`` is installed (registered on first call)."""
    global _heif_checked, _extra_formats
    if not _heif_checked:
        _heif_checked = True
        try:
            import pillow_heif  # type: ignore[import-not-found]

            pillow_heif.register_heif_opener()
            if hasattr(pillow_heif, "register_avif_opener"):
                pillow_heif.register_avif_opener()
            _extra_formats = frozenset({"HEIF", "AVIF"})
        except ImportError:
            pass
        if "AVIF" in Image.registered_extensions().values():
            _extra_formats = _extra_formats | {"AVIF"}
    return BASE_FORMATS | _extra_formats


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image in RGB, ready for every encoder (hashes and CNN) without decoding again."""

    rgb: Image.Image
    width: int
    height: int
    format: str | None

    def gray(self, size: tuple[int, int]) -> np.ndarray:
        """Resize with LANCZOS to ``size`` (width, height), then grayscale: a hash method's input."""
        return np.asarray(self.rgb.resize(size, Image.LANCZOS).convert("L"), dtype=np.uint8)

    def array(self) -> np.ndarray:
        """Full-size RGB uint8 array (the CNN path's input)."""
        return np.asarray(self.rgb, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    # RGBA first, as the reference does, so palette/LA/CMYK/16-bit modes take the same route.
    return img if img.mode == "RGB" else img.convert("RGBA").convert("RGB")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found (deleted or moved away?)"
    if isinstance(exc, PermissionError):
        return "permission denied: make the file readable by the user running dedupd"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, Image.DecompressionBombError):
        return f"decompression bomb refused ({exc}); raise PIL's MAX_IMAGE_PIXELS only for trusted files"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image, or an image format Pillow cannot read"
    text = str(exc) or type(exc).__name__
    if "truncated" in text:
        return f"truncated image data ({text})"
    return f"corrupt image data ({type(exc).__name__}: {text})"


def decode_file(
    path: str | os.PathLike[str],
    *,
    exif_transpose: bool = False,
    fast: bool = False,
    draft_size: tuple[int, int] = (256, 256),
) -> DecodedImage:
    """Decode one file into RGB, applying the reference's format whitelist and mode conversion.

    Raises:
        ImageDecodeError: the file is missing, unreadable, empty, not an image, a decompression
            bomb, truncated, or in a format outside the whitelist. ``reason`` says which.
    """
    name = os.fsdecode(path)
    try:
        if os.path.getsize(path) == 0:
            raise ImageDecodeError(name, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # Between MAX_IMAGE_PIXELS and twice that Pillow only warns; we still decode (as the
            # reference does) but must not turn the warning into an error under -W error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt = img.format
                if fmt not in supported_formats():
                    raise ImageDecodeError(name, f"unsupported image format {fmt}")
                if fast and fmt in ("JPEG", "MPO"):
                    img.draft("RGB", draft_size)
                if exif_transpose:
                    img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
                rgb.load()
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError, RuntimeError) as exc:
        raise ImageDecodeError(name, _reason(exc)) from exc
    return DecodedImage(rgb=rgb, width=rgb.width, height=rgb.height, format=fmt)


def decode_array(array: np.ndarray) -> DecodedImage:
    """Wrap an in-memory image array the way the reference does (cast to uint8, ``fromarray``)."""
    img = Image.fromarray(np.asarray(array).astype("uint8"))
    return DecodedImage(rgb=img, width=img.width, height=img.height, format=None)


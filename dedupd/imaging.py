"""Decoding image files into the arrays the encoders take: the only module that calls PIL's codecs.

The default ("exact") path reproduces imagededup's preprocessing step by step, which is what makes
hashes identical to the reference for the same file:

1. open, and refuse formats outside the whitelist;
2. any mode other than RGB is converted to RGBA and then to RGB (alpha is dropped, not composited);
3. per method, resize the full RGB image with LANCZOS to the method's size;
4. *then* convert to grayscale ("L").

EXIF orientation is ignored there, as in the reference. ``exif_transpose=True`` (on by default in
the daemon and ``dedupd scan``: a photo and its rotated export then hash alike) and ``fast=True``
(JPEG DCT-domain downscaling, or an integer box reduction for other formats, to at least 256 px
before the resize) are dedupd extensions; they change hashes (slightly, for ``fast``) and are
never on in the imagededup-compatible API by default.

The fast path keeps the exact path's geometry: a reduction by ``f`` of a side that ``f`` does not
divide leaves a partial last pixel, so the reduced image spans ``side / f`` of its pixels, not all
of them; the later LANCZOS resizes read that span (:attr:`DecodedImage.box`), which maps each
output pixel onto the same part of the photo as the exact path does. Measured on 360 files (30
6 MP photos and every everyday edit of each; ``bench/bench_encode.py --only d``), the bits that
differ from the exact hash per file fell from 0.22-0.41 (whole reduced image resized) to 0.03-0.23,
and the pair agreement (threshold 10) of aHash from 0.960 to 1.000, at the same speed.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from dedupd import resample
from dedupd.errors import ImageDecodeError, ImageTooLargeError

#: The EXIF tag that says how a camera held the picture (1: as stored; 2-8: flips and turns).
EXIF_ORIENTATION = 0x0112

#: Formats imagededup accepts (PIL's names; PGM and PBM files report themselves as PPM): the
#: library API's whitelist. The daemon, ``dedupd scan`` and ``calibrate`` add HEIF/AVIF
#: (:func:`supported_formats`).
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
            import pillow_heif  # type: ignore[import-not-found,unused-ignore]

            pillow_heif.register_heif_opener()
            if hasattr(pillow_heif, "register_avif_opener"):
                pillow_heif.register_avif_opener()
            _extra_formats = frozenset({"HEIF", "AVIF"})
        except ImportError:
            pass
        if "AVIF" in Image.registered_extensions().values():
            _extra_formats = _extra_formats | {"AVIF"}
    return BASE_FORMATS | _extra_formats


_limit_set: int | None = None


def limit_pixels(max_pixels: int) -> None:
    """Make Pillow refuse every image above ``max_pixels`` in this process, deterministically.

    For worker processes that decode untrusted bytes (one decode at a time, on their main thread):
    Pillow's own check (at open, and for each later GIF frame) only *warns* between its limit and
    twice that; the warning is made an error here, once per process, so no
    ``warnings.catch_warnings`` (which is not thread-safe) is needed around each decode. Pillow's
    other warnings about hostile or damaged data (corrupt EXIF, tags past the end of the file) are
    silenced: they are not actionable, and would reach the daemon's log as raw, non-JSON lines.
    """
    global _limit_set
    if _limit_set != max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
        if _limit_set is None:
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        _limit_set = max_pixels


def too_large_reason(pixels: int | None, max_pixels: int, size: tuple[int, int] | None = None) -> str:
    """Why an image above ``max_pixels`` is refused, naming the limit and the config key that raises it."""
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else (
        f"{pixels:,} pixels" if pixels else "more pixels than allowed")
    return (f"image too large ({what}), above the pixel limit max_pixels = {max_pixels:,} "
            f"({max_pixels / 1e6:g} Mpx); refused undecoded as a possible decompression bomb: raise "
            "max_pixels in the daemon config if such files are trusted")


def refused_at(reason: str | None) -> int | None:
    """The ``max_pixels`` a :func:`too_large_reason` names (None for any other reason)."""
    found = re.search(r"above the pixel limit max_pixels = ([\d,]+) ", reason or "")
    return int(found.group(1).replace(",", "")) if found else None


def _bomb_pixels(exc: BaseException) -> int | None:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image in RGB, ready for every encoder (hashes and CNN) without decoding again."""

    rgb: Image.Image
    width: int
    height: int
    format: str | None
    #: The part of :attr:`rgb` (left, upper, right, lower; in its pixels) that shows the whole photo,
    #: when the fast decode left a partial last row or column; None: all of it.
    box: tuple[float, float, float, float] | None = None

    def gray(self, size: tuple[int, int]) -> np.ndarray:
        """Resize with LANCZOS to ``size`` (width, height), then grayscale: a hash method's input."""
        return self.grays([size])[size]

    def _pillow_gray(self, size: tuple[int, int]) -> np.ndarray:
        return np.asarray(self._pillow_resize(size).convert("L"), dtype=np.uint8)

    def _pillow_resize(self, size: tuple[int, int]) -> Image.Image:
        return self.rgb.resize(size, Image.Resampling.LANCZOS, box=self.box)

    def grays(self, sizes: Iterable[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        """:meth:`gray` for each size, with identical values; on large images (when numba is
        installed) the costly horizontal pass runs in :mod:`dedupd.resample`, once per width."""
        sizes = list(dict.fromkeys(sizes))
        small = self._accelerated(sizes)
        return {s: resample.to_gray(small[s]) if s in small else self._pillow_gray(s) for s in sizes}

    def resized(self, size: tuple[int, int]) -> Image.Image:
        """``rgb.resize(size, LANCZOS)``, the same pixels, through :mod:`dedupd.resample` when it applies."""
        small = self._accelerated([size])
        return Image.fromarray(small[size]) if size in small else self._pillow_resize(size)

    def reduced(self, size: tuple[int, int]) -> Image.Image | np.ndarray:
        """:meth:`resized` as :func:`resize_box_gray` takes it: its RGBX words when the resize ran in
        :mod:`dedupd.resample` (no Pillow image built: ~0.15 ms at 341x256), else the Pillow image."""
        small = self._accelerated([size])
        if size not in small:
            return self._pillow_resize(size)
        return resample.to_words(small[size]) if sys.byteorder == "little" else Image.fromarray(small[size])

    def source(self) -> Image.Image | np.ndarray:
        """The full image as :func:`resize_box_gray` takes it: its RGBX words (read in place, once)
        where the compiled passes apply to it, else :attr:`rgb`."""
        words = self._words() if self._applies() else None
        return self.rgb if words is None else words

    def _applies(self) -> bool:
        return (self.rgb.mode == "RGB" and self.width * self.height >= ACCELERATE_MIN_PIXELS and self.box is None
                and resample.available())

    def _words(self) -> np.ndarray | None:
        if "words" not in self.__dict__:  # (a frozen dataclass: cached by hand, read in place once)
            self.__dict__["words"] = _rgbx_words(self.rgb)
        return self.__dict__["words"]

    def _columns(self, words: np.ndarray) -> np.ndarray:
        """:func:`resample.column_copy` of ``words``, made once per image and kept (shared by its wide
        targets, which come in several calls: the crops' reduced copies)."""
        if "columns" not in self.__dict__:
            self.__dict__["columns"] = resample.column_copy(words)
        return self.__dict__["columns"]

    def _accelerated(self, sizes: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        """The LANCZOS resizes of :attr:`rgb` to those ``sizes`` that :mod:`dedupd.resample` reproduces
        (one horizontal pass per width), as (h, w, 3) RGB; empty where it does not apply (or is not installed)."""
        fast = [s for s in sizes if resample.horizontal_first(self.width, self.height, *s)]
        if len(fast) == 0 or not self._applies():
            return {}
        out: dict[tuple[int, int], np.ndarray] = {}
        words = self._words()
        widths = list(dict.fromkeys(s[0] for s in fast))
        if words is not None:
            # the wide targets from one column-major copy of a small image, the others from the words
            wide = [w for w in widths if w * COLUMNS_MIN_RATIO >= self.width] if words.size <= COLUMNS_MAX_PIXELS else []
            mids = resample.horizontal_passes_rgbx(words, wide, self._columns(words)) if wide else {}
            mids.update((w, resample.horizontal_pass_rgbx(words, w)) for w in widths if w not in mids)
        else:
            planes = resample.rgb_planes(np.asarray(self.rgb))
            mids = {width: resample.horizontal_pass(planes, width) for width in widths}
        for s in fast:  # then the vertical passes
            out[s] = resample.vertical_pass(mids[s[0]], s[1])
        return out

    def array(self) -> np.ndarray:
        """Full-size RGB uint8 array (the CNN path's input)."""
        return np.asarray(self.rgb, dtype=np.uint8)


def resize_box(img: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float]) -> Image.Image:
    """``img.resize(size, LANCZOS, box=box)``, the same pixels, through :mod:`dedupd.resample` where
    it applies (an RGB image of :data:`ACCELERATE_MIN_PIXELS` or more, a box inside it, the
    horizontal-first order): the crop variants' resizes, ~0.5 ms each in Pillow from a 256 px copy."""
    if (img.mode == "RGB" and img.width * img.height >= ACCELERATE_MIN_PIXELS
            and resample.box_applies(img.width, img.height, size, box) and resample.available()):
        words = _rgbx_words(img)
        if words is not None:
            return Image.fromarray(resample.resize_box_rgbx(words, size, box))
    return img.resize(size, Image.Resampling.LANCZOS, box=box)


def resize_box_gray(src: Image.Image | np.ndarray, size: tuple[int, int],
                    box: tuple[float, float, float, float]) -> np.ndarray:
    """``np.asarray(img.resize(size, LANCZOS, box=box).convert("L"))``, the same values, with ``src``
    an RGB image or its RGBX words (:meth:`DecodedImage.reduced`, :meth:`DecodedImage.source`): the
    crop variants' hashes, without a Pillow image made of each result where :mod:`dedupd.resample` applies."""
    if isinstance(src, np.ndarray):
        h, w = src.shape
        if resample.box_applies(w, h, size, box):
            return resample.to_gray(resample.resize_box_rgbx(src, size, box))
        src = Image.frombytes("RGB", (w, h), src.tobytes(), "raw", "RGBX")
    elif (src.mode == "RGB" and src.width * src.height >= ACCELERATE_MIN_PIXELS
          and resample.box_applies(src.width, src.height, size, box) and resample.available()):
        words = _rgbx_words(src)
        if words is not None:
            return resample.to_gray(resample.resize_box_rgbx(words, size, box))
    return np.asarray(src.resize(size, Image.Resampling.LANCZOS, box=box).convert("L"), dtype=np.uint8)


#: Below this many pixels :meth:`DecodedImage.grays` uses Pillow's resize, above it :mod:`dedupd.resample`
#: (when numba is installed). A process that hashes many files lowers it with :func:`accelerate_small_images`
#: to :data:`SMALL_IMAGE_PIXELS`: with the gray results taken straight from the compiled passes (no Pillow
#: image made of each), they are faster at every size (the pHash and dHash sizes and their crop variants,
#: CPU per file: 640 px 4.6 -> 4.0 ms; 64 px 0.42 -> 0.17 ms against Pillow's resizes), but loading them
#: costs a new process ~1-2 s, which a library call on a few small files should not pay.
ACCELERATE_MIN_PIXELS = 1_000_000
SMALL_IMAGE_PIXELS = 0
#: Up to this many pixels :meth:`DecodedImage.grays` and the reduced copies take their horizontal passes
#: from one column-major copy of the image (:func:`resample.horizontal_passes_rgbx`, 3 bytes a pixel, kept
#: with the image); above, straight from Pillow's words (:func:`resample.horizontal_pass_rgbx`). The
#: default hashes' resizes, CPU per image against the words' passes: 640x360 0.79x, 1024x576 0.89x,
#: 1448x814 0.87x, 2048x1152 1.08x, 2896x1629 0.98x (taps that span more columns than the cache holds).
COLUMNS_MAX_PIXELS = 1_500_000
#: ... and for target widths of at least 1 / this of the image's (the crops' reduced copies): a narrow
#: target's pass gains less than the copy costs (pHash + dHash alone, no crops, 640 px: 3-9 % slower
#: with the copy; the copy's fresh pages slow the next decode too).
COLUMNS_MIN_RATIO = 8


def accelerate_small_images() -> bool:
    """Load the compiled resize passes now and use them from :data:`SMALL_IMAGE_PIXELS` up in this
    process (a long-lived decode worker); False when numba is not installed (Pillow's resize, same values)."""
    global ACCELERATE_MIN_PIXELS
    if not resample.load_hot_passes():
        return False
    ACCELERATE_MIN_PIXELS = SMALL_IMAGE_PIXELS
    return True


class _ArrowSchema(ctypes.Structure):
    _fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
                ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64), ("children", ctypes.c_void_p),
                ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p)]


class _ArrowArray(ctypes.Structure):
    pass


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64), ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))), ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p)]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _rgbx_words(rgb: Image.Image) -> np.ndarray | None:
    """The pixels of an RGB image in place, as (H, W) uint32 RGBX words, when Pillow holds them in
    one block (read through its Arrow export); None otherwise (older Pillow, several blocks, or a
    big-endian machine): the caller then copies them (``np.asarray``, ~40 ms at 12 MP)."""
    if sys.byteorder != "little":
        return None
    try:
        schema_capsule, array_capsule = rgb.__arrow_c_array__()
    except (AttributeError, ValueError):
        return None
    schema = _ArrowSchema.from_address(_capsule_pointer(schema_capsule, b"arrow_schema"))
    array = _ArrowArray.from_address(_capsule_pointer(array_capsule, b"arrow_array"))
    n = rgb.width * rgb.height * 4
    child = array.children[0].contents if array.n_children == 1 else None
    if (schema.format != b"+w:4" or array.offset != 0 or child is None or child.length != n
            or child.offset != 0 or child.n_buffers < 2):
        return None
    # the export (and the pixels) must outlive the array: its base is the holder of the capsules
    return np.asarray(_PinnedPixels(child.buffers[1], (rgb.height, rgb.width), (schema_capsule, array_capsule, rgb)))


class _PinnedPixels:
    """Pixel memory at ``address`` as an array interface, with the objects owning that memory
    (``pinned``): ``np.asarray`` of it is a plain array whose ``base`` is this holder, so the
    memory lives as long as the array and every view of it. (An ndarray subclass as the holder
    does not work: numpy collapses a view's base chain past arrays that do not own their data.)"""

    def __init__(self, address: int, shape: tuple[int, int], pinned: object) -> None:
        self.__array_interface__ = {"data": (address, False), "shape": shape, "typestr": "<u4", "version": 3}
        self.pinned = pinned


_PILLOW_MAX_PIXELS = 89_478_485  # Pillow's default MAX_IMAGE_PIXELS


def single_block_images(max_pixels: int) -> None:
    """Let Pillow hold images up to ``max_pixels`` in one memory block, so that :meth:`DecodedImage.grays`
    reads their pixels in place. Pillow allocates what an image needs either way; only the split
    into blocks (16 MB each by default) changes."""
    want = (min(max_pixels, 2 * _PILLOW_MAX_PIXELS) * 4 // 4096 + 1) * 4096  # Pillow wants pages
    if Image.core.get_block_size() < want:
        Image.core.set_block_size(want)


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
    if isinstance(exc, Warning):
        return (f"Pillow warned while reading it and warnings are errors in this process "
                f"({type(exc).__name__}: {exc})")
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
    max_pixels: int | None = None,
    formats: frozenset[str] = BASE_FORMATS,
) -> DecodedImage:
    """Decode one file into RGB, applying a format whitelist and the reference's mode conversion.

    ``formats`` is the whitelist: imagededup's by default (the library API); the daemon passes
    :func:`supported_formats`. ``max_pixels`` is the daemon's mode for untrusted bytes (its worker
    processes call :func:`limit_pixels` first): only the whitelisted codecs may parse the file, and
    an image above ``max_pixels`` is refused with :class:`~dedupd.errors.ImageTooLargeError` before
    any pixel is decoded. ``None`` (the library API) keeps imagededup's behaviour: Pillow's default
    limit, whose ``DecompressionBombWarning`` is shown, and any warning Pillow raises as an error
    (``-W error``) refuses the file, where the reference returns None.

    Raises:
        ImageDecodeError: the file is missing, unreadable, empty, not an image, a decompression
            bomb, truncated, or in a format outside the whitelist. ``reason`` says which.
    """
    name = os.fsdecode(path)
    single_block_images(max_pixels or Image.MAX_IMAGE_PIXELS or _PILLOW_MAX_PIXELS)
    try:
        if os.path.getsize(path) == 0:
            raise ImageDecodeError(name, "empty file (0 bytes)")
        if max_pixels is not None:
            return _decode_limited(path, name, exif_transpose, fast, draft_size, max_pixels, formats)
        with Image.open(path) as img:
            fmt = img.format
            if fmt not in formats:
                raise ImageDecodeError(name, f"unsupported image format {fmt}")
            rgb, box = _decode_opened(img, fmt, exif_transpose, fast, draft_size)
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError, RuntimeError,
            Warning) as exc:  # Warning: one Pillow raised under ``-W error`` (corrupt EXIF, a large image)
        raise ImageDecodeError(name, _reason(exc)) from exc
    return DecodedImage(rgb=rgb, width=rgb.width, height=rgb.height, format=fmt, box=box)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 when absent, or when the EXIF block is too damaged to read: the
    pixels are then hashed as stored rather than the file refused)."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - any parser error in hostile metadata
        return 1
    return value if isinstance(value, int) else 1


#: EXIF orientation -> the turn or flip that shows the picture upright (the EXIF standard, as Pillow's ``exif_transpose``).
_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90}


def transpose_box(box: tuple[float, float, float, float], size: tuple[int, int],
                  method: Image.Transpose) -> tuple[float, float, float, float]:
    """Where ``box`` (within an image of ``size``) lies after ``image.transpose(method)``."""
    w, h = size
    moves = {
        Image.Transpose.FLIP_LEFT_RIGHT: lambda x, y: (w - x, y),
        Image.Transpose.FLIP_TOP_BOTTOM: lambda x, y: (x, h - y),
        Image.Transpose.ROTATE_180: lambda x, y: (w - x, h - y),
        Image.Transpose.TRANSPOSE: lambda x, y: (y, x),
        Image.Transpose.ROTATE_90: lambda x, y: (y, w - x),
        Image.Transpose.ROTATE_270: lambda x, y: (h - y, x),
        Image.Transpose.TRANSVERSE: lambda x, y: (h - y, w - x),
    }
    (x0, y0), (x1, y1) = moves[method](box[0], box[1]), moves[method](box[2], box[3])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _decode_opened(img: Image.Image, fmt: str | None, exif_transpose: bool, fast: bool,
                   draft_size: tuple[int, int]) -> tuple[Image.Image, tuple[float, float, float, float] | None]:
    """The RGB pixels, and (fast only) the part of them that shows the photo (see :attr:`DecodedImage.box`)."""
    width, height = img.size
    scale = 1.0
    if fast and fmt in ("JPEG", "MPO"):
        drafted = img.draft("RGB", draft_size)  # DCT-domain downscale by 1/2, 1/4 or 1/8, staying >= draft_size
        if drafted is not None and drafted[1] is not None:
            scale = width / drafted[1][2]
    turn = _ORIENTATION_TRANSPOSE.get(_orientation(img)) if exif_transpose else None
    rgb = _to_rgb(img)
    rgb.load()
    if fast:
        # other formats (and JPEGs above 8x the draft size): an integer box reduction to the same bound
        factor = min(rgb.width // draft_size[0], rgb.height // draft_size[1])
        if factor >= 2:
            rgb = rgb.reduce(factor)
            scale *= factor
    box = (0.0, 0.0, width / scale, height / scale) if fast else None
    if turn is not None:
        # (after the reductions, on fewer pixels; it copies even an image it need not turn: asked only then)
        if box is not None:
            box = transpose_box(box, rgb.size, turn)
        rgb = rgb.transpose(turn)
    if box is not None and box == (0.0, 0.0, float(rgb.width), float(rgb.height)):
        box = None
    return rgb, box


def open_untrusted(path: str | os.PathLike[str], max_pixels: int,
                   formats: frozenset[str] | None = None) -> Image.Image:
    """``Image.open`` restricted to the whitelisted codecs (``formats``, by default
    :func:`supported_formats`), refusing images above ``max_pixels``.

    Raises:
        ImageTooLargeError: above the limit (from the header, before any pixel is decoded).
        OSError, ValueError, ...: as ``Image.open`` (not an image, unreadable).
    """
    name = os.fsdecode(path)
    allowed = supported_formats() if formats is None else formats
    Image.init()  # every plugin registered: ``Image.ID`` is then the order Image.open tries them in
    try:
        img = Image.open(path, formats=[f for f in Image.ID if f in allowed])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(name, too_large_reason(_bomb_pixels(exc), max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageDecodeError(name, "not an image, or not in a format dedupd decodes "
                                     f"({', '.join(sorted(allowed))})") from None
    if img.width * img.height > max_pixels:
        size = img.size
        img.close()
        raise ImageTooLargeError(name, too_large_reason(None, max_pixels, size))
    return img


def _decode_limited(path: str | os.PathLike[str], name: str, exif_transpose: bool, fast: bool,
                    draft_size: tuple[int, int], max_pixels: int, formats: frozenset[str]) -> DecodedImage:
    try:
        with open_untrusted(path, max_pixels, formats) as img:
            fmt = img.format
            rgb, box = _decode_opened(img, fmt, exif_transpose, fast, draft_size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # e.g. a later GIF frame
        raise ImageTooLargeError(name, too_large_reason(_bomb_pixels(exc), max_pixels)) from None
    return DecodedImage(rgb=rgb, width=rgb.width, height=rgb.height, format=fmt, box=box)


def decode_array(array: np.ndarray) -> DecodedImage:
    """Wrap an in-memory image array the way the reference does (cast to uint8, ``fromarray``)."""
    img = Image.fromarray(np.asarray(array).astype("uint8"))
    return DecodedImage(rgb=img, width=img.width, height=img.height, format=None)


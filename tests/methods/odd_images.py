"""Builds a folder of awkward inputs: corrupt, empty, fake, bomb, odd modes, EXIF-rotated, animated."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

from PIL import Image


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (a decompression bomb by its header alone)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def build(src_jpg: Path, out: Path) -> dict[str, str]:
    """Write the odd files into ``out``; returns {name: what it is}."""
    out.mkdir(parents=True, exist_ok=True)
    base = Image.open(src_jpg).convert("RGB")
    base.thumbnail((320, 320))
    kinds: dict[str, str] = {}

    def save(name: str, what: str, img: Image.Image | None = None, data: bytes | None = None, **kw) -> None:
        kinds[name] = what
        if data is not None:
            (out / name).write_bytes(data)
        else:
            img.save(out / name, **kw)

    save("ok.jpg", "plain JPEG", base, quality=92)
    full = (out / "ok.jpg").read_bytes()
    save("truncated.jpg", "JPEG cut in half", data=full[: len(full) // 2])
    save("corrupt.jpg", "JPEG header then garbage", data=full[:200] + b"\x00garbage" * 200)
    save("empty.jpg", "zero bytes", data=b"")
    save("not_an_image.png", "text with an image extension", data=b"hello, I am not a PNG\n" * 20)
    save("bomb.png", "decompression bomb (30000x30000 header)", data=_png_header_only(30000, 30000))
    save("gray16.png", "16-bit grayscale PNG", base.convert("L").point(lambda v: v * 256).convert("I;16"))
    save("palette.png", "palette PNG", base.convert("P", palette=Image.Palette.ADAPTIVE))
    save("cmyk.jpg", "CMYK JPEG", base.convert("CMYK"), quality=92)
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    save("alpha.png", "RGBA PNG, half transparent", rgba)
    save("la.png", "grayscale + alpha PNG", base.convert("LA"))
    save("gray.jpg", "grayscale JPEG", base.convert("L"), quality=90)
    rotated = base.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif_rotated.jpg", "pixels rotated + EXIF orientation 6", rotated, quality=92, exif=exif.tobytes())
    frames = [base.convert("P"), base.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("P")]
    kinds["animated.gif"] = "animated GIF, 2 frames"
    frames[0].save(out / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    save("tiny.bmp", "1x1 BMP", Image.new("RGB", (1, 1), (200, 10, 10)))
    save("image.tiff", "TIFF", base)
    save("image.webp", "WebP", base, quality=80)
    save("image.ppm", "PPM", base)
    save("image.pgm", "PGM", base.convert("L"))
    save("image.pbm", "PBM (1-bit)", base.convert("1"))
    buf = io.BytesIO()
    base.save(buf, "ICO")
    save("icon.jpg", "ICO file under a .jpg name (format outside the whitelist)", data=buf.getvalue())
    shutil.copyfile(src_jpg, out / "copy_of_source.jpg")
    kinds["copy_of_source.jpg"] = "byte copy of a corpus photo"
    return kinds

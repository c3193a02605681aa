"""Hostile inputs for the decode-isolation tests: pixel bombs, mutated images, raw uploads."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image

from tests.daemon.helpers import api


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bitmap_png(width: int, height: int) -> bytes:
    """A complete, valid 1-bit black PNG of ``width`` x ``height``: tiny on disk (12000x12000 is
    17.5 KB), huge once decoded (Pillow converts to RGBA then RGB: about 1.3 GB)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def seed_images() -> dict[str, bytes]:
    """Small valid images in every fuzzed format (a gradient with detail, so codecs do real work)."""
    img = Image.new("RGB", (48, 32))
    img.putdata([((x * 5) % 256, (y * 8) % 256, (x * y) % 256) for y in range(32) for x in range(48)])
    out = {}
    for fmt, kwargs in (("JPEG", {"quality": 80}), ("PNG", {}), ("GIF", {}), ("TIFF", {"compression": "tiff_lzw"}),
                        ("WEBP", {"quality": 70})):
        buf = io.BytesIO()
        img.save(buf, fmt, **kwargs)
        out[fmt] = buf.getvalue()
    return out


def post_bytes(socket_path: str, data: bytes, timeout: float = 120.0) -> tuple[int, Any]:
    """``POST /v1/query`` with ``data`` as the body; (status, parsed JSON)."""
    return api(socket_path, "POST", "/v1/query", data, timeout)


def proc_status_kb(pid: int, field: str) -> int:
    """``VmHWM`` / ``VmRSS`` ... of ``pid`` in kB, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


# -- worker tasks for the pool tests (module level: a worker process imports them) -----------------


def crash() -> None:
    """A codec bug: the worker dies of SIGSEGV."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def hang() -> None:
    import time

    while True:
        time.sleep(1)


def nap(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()

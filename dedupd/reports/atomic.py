"""Report files written whole (temp file in the same folder, fsync, rename) with the configured mode."""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Iterable


@functools.cache
def process_umask() -> int:
    """This process's umask, read without changing it (``os.umask`` is process-wide: racy in threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def file_mode(configured: int) -> int:
    """The mode report files get: ``report_mode`` less the umask (a Docker ``UMASK`` is honoured)."""
    return configured & ~process_umask() & 0o777


def write_atomic(path: str, data: bytes | Iterable[bytes], mode: int, *, durable: bool = True,
                 timings: dict[str, float] | None = None, prefix: str = ".tmp-") -> None:
    """Replace ``path`` with ``data`` (bytes, or pieces written in turn) at once (readers never see
    half a file), as ``file_mode(mode)``; ``durable``: fsync before the rename (reports; a cache
    such as thumbnails can skip it). ``timings`` gets the seconds spent writing, syncing and renaming;
    ``prefix``: the temp file's name starts with it."""
    t0 = time.monotonic()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                f.writelines(data)
            t1 = time.monotonic()
            if durable:
                f.flush()
                os.fsync(f.fileno())
        t2 = time.monotonic()
        os.chmod(tmp, file_mode(mode))
        os.replace(tmp, path)
        if timings is not None:
            timings.update(write=t1 - t0, sync=t2 - t1, rename=time.monotonic() - t2)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

"""Report files written whole (temp file in the same folder, fsync, rename) with the configured mode.

A temp file is named ``.dedupd-tmp-<pid>-<random>``: a writer killed mid-write (``kill -9``, a
power cut) leaves it behind, and :func:`sweep_stale_temps` tells such leftovers from a live
writer's by that pid. At a million files one cut ``groups.json`` write leaves ~27 MB.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable

logger = logging.getLogger(__name__)

TMP_PREFIX = ".dedupd-tmp-"
#: temp files of dedupd before its names carried the writer's pid (``mkstemp``'s 8 random characters)
_LEGACY_TMP = re.compile(r"\.tmp-[a-z0-9_]{8}")
#: a legacy temp file unchanged this long is a leftover (no write of a report takes minutes)
LEGACY_STALE_S = 600.0


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
                 timings: dict[str, float] | None = None, prefix: str | None = None) -> None:
    """Replace ``path`` with ``data`` (bytes, or pieces written in turn) at once (readers never see
    half a file), as ``file_mode(mode)``; ``durable``: fsync before the rename (reports; a cache
    such as thumbnails can skip it). ``timings`` gets the seconds spent writing, syncing and renaming;
    ``prefix``: the temp file's name starts with it (default: :func:`temp_prefix`)."""
    t0 = time.monotonic()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix() if prefix is None else prefix, dir=folder)
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


def temp_prefix() -> str:
    """The start of this process's temp file names: :data:`TMP_PREFIX` and its pid."""
    return f"{TMP_PREFIX}{os.getpid()}-"


def _writer_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs (in this pid namespace); this process counts as gone: a
    sweep runs before its first write, so a file with its pid is an earlier life's (a container's
    daemon has the same pid after every restart)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: someone else's live process
        return False
    return False


def sweep_stale_temps(folder: str) -> tuple[int, int]:
    """Remove the temp files in ``folder`` that writers killed mid-write left behind; returns how
    many and their bytes. Call it before this process writes there.

    Removed: regular files named ``.dedupd-tmp-<pid>-...`` whose ``pid`` no longer runs (or is
    this process's), and those of older dedupd versions (``.tmp-`` and 8 random characters)
    unchanged for :data:`LEGACY_STALE_S`. Nothing else is touched: not a user's file, not a
    symlink, not a live writer's temp file. A writer in another pid namespace sharing the folder
    would look gone: its write then fails and is retried (its report is not lost, only late).
    """
    removed = size = 0
    try:
        entries = os.scandir(folder)  # (iterated, not listed: up to a million thumbnails)
    except FileNotFoundError:  # nothing written there yet
        return 0, 0
    except OSError as exc:
        logger.warning("could not look for stale temp files in %s: %s", folder, exc, extra={"dir": folder})
        return 0, 0
    now = time.time()
    with entries:
        for entry in entries:
            removed, size = _sweep_one(entry, now, removed, size)
    return removed, size


def _sweep_one(entry: os.DirEntry[str], now: float, removed: int, size: int) -> tuple[int, int]:
    """:func:`sweep_stale_temps` of one folder entry: the counts with it removed or not."""
    name = entry.name
    if name.startswith(TMP_PREFIX):
        pid = name[len(TMP_PREFIX):].partition("-")[0]
        if not pid.isdigit() or not _writer_gone(int(pid)):
            return removed, size
        legacy = False
    elif _LEGACY_TMP.fullmatch(name):
        legacy = True
    else:
        return removed, size
    try:
        st = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or (legacy and now - st.st_mtime < LEGACY_STALE_S):
            return removed, size
        os.unlink(entry.path)
    except FileNotFoundError:  # renamed into place or removed meanwhile
        return removed, size
    except OSError as exc:
        logger.warning("could not remove the stale temp file %s: %s", entry.path, exc, extra={"path": entry.path})
        return removed, size
    return removed + 1, size + st.st_size

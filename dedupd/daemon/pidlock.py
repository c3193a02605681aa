"""An exclusive, non-blocking ``flock`` on a file that names its holder's pid.

Used for the store's writer lock and the socket's ownership lock. The kernel drops a ``flock``
when its holder dies (even by ``kill -9``), so such a lock is never stale; the pid in the file
only lets a second process say who holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os


class LockHeld(Exception):
    """Another open file holds the lock; ``pid`` is its holder's pid (None if unknown)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid}")
        self.pid = pid


def holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def acquire(path: str, mode: int) -> int:
    """Open ``path`` (created with ``mode``) and lock it without waiting; returns the fd.

    The caller writes its pid with :func:`write_pid` once it really owns what the lock guards.

    Raises:
        LockHeld: someone else holds it. OSError: the file cannot be opened or locked.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        pid = holder_pid(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockHeld(pid) from None
        raise
    return fd


def write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

"""Locks of a store: the cross-process writer ``flock`` and the in-process map-resize gate.

Writer lock: an exclusive ``flock`` on ``store_dir/dedupd.lock``.

LMDB already serialises write transactions, but two dedupd processes writing the same store
would each act on duplicates the other is moving. The lock makes "one daemon per store" explicit:
the holder writes its pid into the file, so a second process can say who owns the store.
The kernel drops a ``flock`` when its holder dies (even by ``kill -9``), so it is never stale.

Caveat: a ``flock`` belongs to the open file, which ``fork`` shares; a forked child that outlives
its parent keeps the store locked. Worker pools should use the ``spawn`` or ``forkserver`` start
method (LMDB environments must not cross a fork either).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator

from dedupd.daemon import pidlock
from dedupd.errors import StoreError

LOCK_NAME = "dedupd.lock"


class StoreLockedError(StoreError):
    """Another process holds the store's writer lock; ``pid`` is its process id (None if unknown)."""

    def __init__(self, store_dir: str, pid: int | None) -> None:
        who = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"the store {store_dir} is in use by {who}: a running dedupd daemon owns it. Stop that "
            "daemon first, query it through its socket (`dedupd status`, `dedupd groups`), or give "
            "this command a different store_dir"
        )
        self.store_dir = store_dir
        self.pid = pid


class WriterLock:
    """An acquired writer lock; :meth:`release` (idempotent) gives it up."""

    def __init__(self, store_dir: str) -> None:
        """Take the lock on ``store_dir`` without waiting.

        Raises:
            StoreLockedError: another process (or another Store in this process) holds it.
            StoreError: the lock file cannot be created.
        """
        path = os.path.join(store_dir, LOCK_NAME)
        try:
            fd = pidlock.acquire(path, 0o644)
        except pidlock.LockHeld as held:
            raise StoreLockedError(store_dir, held.pid) from None
        except OSError as exc:
            raise StoreError(f"cannot create or lock the lock file {path}: {exc.strerror}; check permissions") \
                from exc
        try:
            pidlock.write_pid(fd)
        except OSError as exc:
            os.close(fd)
            space = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise StoreError(f"cannot write the lock file {path}: {exc.strerror}; "
                             + ("free space on its filesystem" if space else "check the disk and permissions")) from exc
        self._fd: int | None = fd

    def release(self) -> None:
        """Clear the pid and unlock (the file stays: deleting it would race with a new holder)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock


class ResizeGate:
    """Lets transactions run concurrently but grants :meth:`exclusive` to a map resize, which LMDB
    allows only while this process has no transaction open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold for the life of one transaction (waits while a resize is under way)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._resizing)
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold while resizing or closing: no transaction of this process is open inside."""
        with self._cond:
            self._cond.wait_for(lambda: not self._resizing)
            self._resizing = True
            self._cond.wait_for(lambda: self._active == 0)
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()

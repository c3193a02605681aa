"""Small process pools for the decodes the daemon does besides its ingest: uploads and thumbnails.

Untrusted bytes are decoded only in worker processes. The pipeline's ingest pool is one such pool;
the ones here are separate, so that

* a query never waits behind a 2,000-file ingest (nor behind a report's thumbnails),
* a worker crash or hang on hostile bytes costs that one request, never the ingest pool, and
* at most ``size`` such decodes run at once: six hostile uploads cannot multiply the memory one
  decode may take (bounded itself by ``max_pixels``); later requests wait for a slot, then get
  :class:`DecodeBusy`.

Client bytes reach a worker through a private temporary file (mode 0600) named by the daemon;
nothing the client sent is ever unpickled. Workers are started on first use, from a
``forkserver`` (the daemon's threads are never forked), and exit with the daemon.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from dedupd.daemon.encoder import EncodeResult, EncodeSpec, encode_many, exit_with_parent
from dedupd.daemon.forkserver import worker_context
from dedupd.errors import DedupdError

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: Concurrent upload/query decodes (and worker processes for them).
QUERY_WORKERS = 2
#: A query decode (with the CNN, if configured) that takes longer is stopped and refused.
QUERY_TIMEOUT_S = 60.0
#: How long a query waits for a free decode slot before the answer is "busy" (503).
QUERY_WAIT_S = 30.0


class DecodeBusy(DedupdError):
    """Every decode slot stayed taken for the whole wait: try again later."""


class DecodeFailed(DedupdError):
    """The worker crashed, hung past the time limit, or the pool is shut down; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def kill_executor(pool: cf.ProcessPoolExecutor) -> None:
    """End a pool whose worker hangs: a hung decoder never returns, and the executor has no API to
    stop a running task, so its processes are killed; its other tasks fail with BrokenProcessPool."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except (OSError, ValueError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)


class DecodePool:
    """At most ``size`` tasks at once in worker processes; a crash or a hang fails only its task.

    Args:
        name: for logs and messages.
        size: worker processes, and tasks in flight (more callers wait for a slot).
        task_timeout_s: a task running longer is stopped (its workers are killed) and fails.
        wait_s: how long :meth:`run` waits for a slot (None: forever) before :class:`DecodeBusy`.
    """

    def __init__(self, name: str, size: int, *, task_timeout_s: float, wait_s: float | None = None) -> None:
        self.name = name
        self.size = max(1, size)
        self.task_timeout_s = task_timeout_s
        self.wait_s = wait_s
        self.crashes = 0
        self.timeouts = 0
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._killed: set[int] = set()  # ids of pools whose workers a timeout killed
        self._closed = False

    def _executor(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise DecodeFailed(f"the {self.name} decoders are shut down (the daemon is stopping)")
            if self._pool is None:
                ctx = worker_context()
                self._pool = cf.ProcessPoolExecutor(max_workers=self.size, mp_context=ctx,
                                                    initializer=exit_with_parent, initargs=(os.getpid(),))
            return self._pool

    def _discard(self, pool: cf.ProcessPoolExecutor, *, kill: bool) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
            if kill:
                self._killed.add(id(pool))
        if kill:
            kill_executor(pool)
        else:
            pool.shutdown(wait=False, cancel_futures=True)

    def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` in a worker (``fn`` and ``args`` must be picklable and trusted).

        Raises:
            DecodeBusy: no slot became free within ``wait_s``.
            DecodeFailed: the worker crashed or ran past ``task_timeout_s``, or the pool is shut down.
        """
        if not self._slots.acquire(timeout=self.wait_s):
            raise DecodeBusy(f"all {self.size} {self.name} decoders stayed busy for {self.wait_s:g} s; "
                             "try again shortly")
        try:
            for attempt in (1, 2):
                pool = self._executor()
                try:
                    fut = pool.submit(fn, *args)
                except (BrokenProcessPool, RuntimeError):  # broken or shut down by another task meanwhile
                    self._discard(pool, kill=False)
                    continue
                try:
                    return fut.result(timeout=self.task_timeout_s)
                except cf.TimeoutError:
                    self.timeouts += 1
                    self._discard(pool, kill=True)
                    logger.warning("%s decoder stopped after %.0f s", self.name, self.task_timeout_s)
                    raise DecodeFailed(f"decoding took longer than {self.task_timeout_s:g} s and was "
                                       "stopped") from None
                except BrokenProcessPool:
                    # killed because another task in this pool hung: not this input's fault, retry once
                    innocent = id(pool) in self._killed and attempt == 1
                    self._discard(pool, kill=False)
                    if innocent:
                        continue
                    self.crashes += 1
                    logger.warning("%s decoder process crashed", self.name)
                    raise DecodeFailed("the decoder process crashed on this input") from None
            raise DecodeFailed(f"the {self.name} decoders could not be started")
        finally:
            self._slots.release()

    def start(self, timeout_s: float = 60.0) -> None:
        """Start every worker process now (each costs ~0.5 s of imports), not on first use."""
        try:
            pool = self._executor()
            futures = [pool.submit(os.getpid) for _ in range(self.size)]  # back to back: one process each
            cf.wait(futures, timeout=timeout_s)
        except (DecodeFailed, BrokenProcessPool, RuntimeError):
            logger.debug("%s decoders did not start", self.name, exc_info=True)

    def shutdown(self, join_s: float = 2.0) -> None:
        """Stop the workers (in flight tasks fail); :meth:`run` fails from now on.

        Waits up to ``join_s`` for the executor's manager thread, killing the workers if they are
        not done by then: a hung decoder would otherwise keep that thread, and so the interpreter's
        exit (which joins it without a bound), waiting forever.
        """
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        manager = getattr(pool, "_executor_manager_thread", None)
        if manager is None:
            return
        manager.join(join_s)
        if manager.is_alive():
            kill_executor(pool)
            manager.join(join_s)


def query_pool() -> DecodePool:
    """The pool for bytes a client sends, and watched files a client names (``/v1/query``)."""
    return DecodePool("query", QUERY_WORKERS, task_timeout_s=QUERY_TIMEOUT_S, wait_s=QUERY_WAIT_S)


def encode_bytes(pool: DecodePool, data: bytes, spec: EncodeSpec) -> EncodeResult:
    """Decode and encode ``data`` in a worker of ``pool`` (via a private temporary file).

    Never raises for bad bytes (the result says why); raises :class:`DecodeBusy` when every slot
    stays taken.
    """
    with tempfile.NamedTemporaryFile(prefix="dedupd-upload-") as f:  # mode 0600, removed on close
        f.write(data)
        f.flush()
        try:
            return pool.run(encode_many, [f.name], spec)[0]
        except DecodeFailed as exc:
            return EncodeResult(False, reason=exc.reason)

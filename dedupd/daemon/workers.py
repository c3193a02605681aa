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

Ending a pool: ``ProcessPoolExecutor.shutdown(wait=False)`` returns at once and forgets its
manager thread, which then winds the workers down on its own. That thread must be over before the
interpreter exits: Python 3.11's exit hook writes to the wake-up pipe of every pool whose manager
thread it knows, without the pool's lock, and a manager thread finishing at that moment closes that
pipe under it (``OSError: [Errno 9] Bad file descriptor`` from ``_python_exit`` after a clean stop).
Manager threads started from daemon threads are daemon threads themselves, so a join of the
non-daemon threads misses them. Hence :class:`PoolEnd` (the manager thread is taken before the
shutdown and joined, its workers killed if they do not end), :func:`join_process_pools` at a
daemon's shutdown and :func:`end_process_pools` just before the process exits.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import process as cf_process
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


#: DecodePools of this process (to end them all at exit); no new executor once :func:`end_process_pools` ran
_pools: weakref.WeakSet[DecodePool] = weakref.WeakSet()
_pools_lock = threading.Lock()
_exiting = False


def _kill(procs: list[Any]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except (OSError, ValueError, AttributeError):
            pass


class PoolEnd:
    """A pool's manager thread and worker processes, to be waited for once the pool is shut down
    (``ProcessPoolExecutor.shutdown`` forgets both)."""

    def __init__(self, manager: threading.Thread | None, procs: list[Any]) -> None:
        self.manager = manager
        self.procs = procs

    @classmethod
    def shut(cls, pool: cf.ProcessPoolExecutor, *, kill: bool = False) -> PoolEnd:
        """Shut ``pool`` down without waiting (queued tasks cancelled; ``kill``: its workers killed
        first)."""
        end = cls(getattr(pool, "_executor_manager_thread", None),
                  list((getattr(pool, "_processes", None) or {}).values()))
        if kill:
            _kill(end.procs)
        pool.shutdown(wait=False, cancel_futures=True)
        return end

    def alive(self) -> bool:
        return self.manager is not None and self.manager.is_alive()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the manager thread, then kill the workers it still waits for
        and wait as long again; True once the thread is over."""
        if self.manager is None:
            return True
        self.manager.join(timeout)
        if self.manager.is_alive():
            _kill(self.procs)
            self.manager.join(timeout)
        return not self.manager.is_alive()


def kill_executor(pool: cf.ProcessPoolExecutor) -> PoolEnd:
    """End a pool whose worker hangs: a hung decoder never returns, and the executor has no API to
    stop a running task, so its processes are killed; its other tasks fail with BrokenProcessPool.
    Does not wait (the caller may :meth:`~PoolEnd.join`; :func:`join_process_pools` does)."""
    return PoolEnd.shut(pool, kill=True)


def _manager_threads(*, running: bool) -> list[tuple[threading.Thread, cf.ProcessPoolExecutor | None]]:
    """The live manager threads of this process's pools with their executor (None once collected);
    ``running``: those of pools not shut down too, else only of pools shut down (or collected)."""
    out = []
    # every pool's manager thread is a key of this interpreter table (3.9-3.13); absent: nothing to do
    for thread in list(getattr(cf_process, "_threads_wakeups", {})):
        if not thread.is_alive():
            continue
        ref = getattr(thread, "executor_reference", None)
        executor = ref() if callable(ref) else None
        if running or executor is None or getattr(executor, "_shutdown_thread", True):
            out.append((thread, executor))
    return out


def _join_managers(found: list[tuple[threading.Thread, cf.ProcessPoolExecutor | None]], join_s: float) -> list[str]:
    ends = [PoolEnd(thread, list((getattr(thread, "processes", None) or {}).values())) for thread, _ in found]
    return [thread.name for (thread, _), end in zip(found, ends) if not end.join(join_s)]


def join_process_pools(join_s: float) -> list[str]:
    """Wait for the manager threads of the pools already shut down (a pool discarded without
    waiting, anywhere in the process), killing the workers they still wait for after ``join_s``
    (see :meth:`PoolEnd.join`). Returns the names of those still running after that."""
    return _join_managers(_manager_threads(running=False), join_s)


def end_process_pools(join_s: float) -> list[str]:
    """Just before the process exits: stop every :class:`DecodePool` (none starts a pool again, even
    on a thread that is still running) and every other process pool still running, then wait for
    all their manager threads as :func:`join_process_pools` does. Returns the names of manager
    threads still running after that."""
    global _exiting
    with _pools_lock:
        _exiting = True
        pools = list(_pools)
    for decode_pool in pools:
        decode_pool.shutdown(join_s)
    found = _manager_threads(running=True)
    for _, executor in found:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    return _join_managers(found, join_s)


def start_worker(daemon_pid: int, nice: int = 0) -> None:
    """Worker initializer: exit with the daemon (:func:`~dedupd.daemon.encoder.exit_with_parent`),
    and run ``nice`` steps below the daemon's priority."""
    exit_with_parent(daemon_pid)
    if nice:
        try:
            os.nice(nice)
        except OSError:  # not allowed here: the default priority
            pass


class DecodePool:
    """At most ``size`` tasks at once in worker processes; a crash or a hang fails only its task.

    Args:
        name: for logs and messages.
        size: worker processes, and tasks in flight (more callers wait for a slot).
        task_timeout_s: a task running longer is stopped (its workers are killed) and fails.
        wait_s: how long :meth:`run` waits for a slot (None: forever) before :class:`DecodeBusy`.
        nice: the workers' priority below the daemon's (``os.nice`` steps): work nobody waits for
            (report thumbnails) then takes a core only when the ingest leaves it free.
    """

    def __init__(self, name: str, size: int, *, task_timeout_s: float, wait_s: float | None = None,
                 nice: int = 0) -> None:
        self.name = name
        self.size = max(1, size)
        self.task_timeout_s = task_timeout_s
        self.wait_s = wait_s
        self.nice = nice
        self.crashes = 0
        self.timeouts = 0
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._killed: set[int] = set()  # ids of pools whose workers a timeout killed
        self._ended: list[PoolEnd] = []  # pools discarded after a crash or a hang: joined at shutdown
        self._closed = False
        with _pools_lock:
            _pools.add(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` ran (or the process is exiting): :meth:`run` fails for that."""
        return self._closed or _exiting

    def _executor(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._closed or _exiting:
                raise DecodeFailed(f"the {self.name} decoders are shut down (the daemon is stopping)")
            if self._pool is None:
                ctx = worker_context()
                self._pool = cf.ProcessPoolExecutor(max_workers=self.size, mp_context=ctx,
                                                    initializer=start_worker, initargs=(os.getpid(), self.nice))
            return self._pool

    def _discard(self, pool: cf.ProcessPoolExecutor, *, kill: bool) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
            if kill:
                self._killed.add(id(pool))
            self._ended = [e for e in self._ended if e.alive()]
        end = PoolEnd.shut(pool, kill=kill)
        with self._lock:
            self._ended.append(end)

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

        Waits up to ``join_s`` for the executor's manager thread (and those of pools discarded
        before), killing the workers if they are not done by then: a hung decoder would otherwise
        keep that thread, and so the interpreter's exit (which joins it without a bound), waiting
        forever; and a manager thread still ending at the exit makes Python 3.11's exit hook fail.
        """
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            ends, self._ended = self._ended, []
        if pool is not None:
            ends.append(PoolEnd.shut(pool))
        for end in ends:
            end.join(join_s)


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

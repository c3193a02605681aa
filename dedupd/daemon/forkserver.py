"""How the daemon's decode workers are started: from one ``forkserver`` that has the decode stack loaded.

The daemon's threads are never forked. The server imports :mod:`dedupd.daemon.preload` once, so a
new worker costs a fork, not ~1-2 s of imports and machine-code loading. This module imports
nothing heavy: ``dedupd scan`` starts the server first thing (:func:`start_early`), so that its
preload runs on another core while the scan itself imports and opens its store.

The server is told to preload this module, which (in the server only) imports the decode stack
while watching for the daemon's death: multiprocessing's server looks for that only once its
preload is done, so a ``kill -9`` of the daemon during a slow preload (a busy machine; numba
compiling in a fresh checkout) left the server running for seconds after it.
"""

from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import os
import select
import sys
import threading
import types

PRELOAD = ["__main__", __name__]
#: what the server imports (under :func:`_preload_watching`) before it forks any worker
DECODE_STACK = "dedupd.daemon.preload"
#: how often the preload's guard looks at the daemon (ms)
_GUARD_POLL_MS = 50
#: the daemon's pid, as the server inherits it (a daemon may be PID 1 itself, in a container)
_PARENT_ENV = "DEDUPD_FORKSERVER_PARENT"


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of the daemon's decode pools (the preload list is read when the server starts)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    os.environ[_PARENT_ENV] = str(os.getpid())  # read by the server's preload guard
    return ctx


def start_early() -> None:
    """Start the server now, in the background of whatever this process does next."""
    worker_context()
    multiprocessing.forkserver.ensure_running()


def _server_alive_fd() -> int | None:
    """In the server, while it imports its preload list: the read end of the pipe that reaches its
    end of file when the daemon is gone (the server's own ``alive_r``); None in any other process."""
    frame: types.FrameType | None = sys._getframe(1)
    serve_one = getattr(multiprocessing.forkserver, "_serve_one", None)
    while frame is not None:
        if serve_one is not None and frame.f_code is serve_one.__code__:
            return None  # a worker the server forked (its stack still holds the server's frames)
        if frame.f_code is multiprocessing.forkserver.main.__code__:
            fd = frame.f_locals.get("alive_r")
            return fd if isinstance(fd, int) else None
        frame = frame.f_back
    return None


def _preload_watching(alive_r: int) -> None:
    """Import :data:`DECODE_STACK`; should the daemon die meanwhile, the server exits at once (it
    has no worker yet). The guard thread is over before the server forks anything.

    The daemon's end shows as the end of file of ``alive_r`` only once no copy of its write end is
    left, and every fork request the daemon sent carries one: a request queued before a ``kill -9``
    kept the server preloading (and then forking) for seconds. So the daemon itself, the server's
    parent, is watched too (through a pidfd).
    """
    done = threading.Event()
    poller = select.poll()
    poller.register(alive_r, select.POLLIN)  # nobody writes to it: readable = end of file
    pidfd = None
    daemon = int(os.environ.get(_PARENT_ENV) or 0)
    if daemon and os.getppid() != daemon:  # the daemon died while this server started (re-parented)
        os._exit(0)
    try:
        pidfd = os.pidfd_open(daemon or os.getppid())
        poller.register(pidfd, select.POLLIN)  # readable once the daemon is gone
    except ProcessLookupError:  # already gone
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd (old kernel)
        pass

    def guard() -> None:
        while not done.is_set():
            if poller.poll(_GUARD_POLL_MS):
                os._exit(0)

    thread = threading.Thread(target=guard, name="dedupd-preload-guard", daemon=True)
    thread.start()
    try:
        importlib.import_module(DECODE_STACK)
    finally:
        done.set()
        thread.join()
        if pidfd is not None:
            os.close(pidfd)


if (_alive_r := _server_alive_fd()) is not None:
    _preload_watching(_alive_r)

"""How the daemon's decode workers are started: from one ``forkserver`` that has the decode stack loaded.

The daemon's threads are never forked. The server imports :mod:`dedupd.daemon.preload` once, so a
new worker costs a fork, not ~1-2 s of imports and machine-code loading. This module imports
nothing heavy: ``dedupd scan`` starts the server first thing (:func:`start_early`), so that its
preload runs on another core while the scan itself imports and opens its store.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver

PRELOAD = ["__main__", "dedupd.daemon.preload"]


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of the daemon's decode pools (the preload list is read when the server starts)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_early() -> None:
    """Start the server now, in the background of whatever this process does next."""
    worker_context()
    multiprocessing.forkserver.ensure_running()

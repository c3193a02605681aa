"""Imported once by the decode pools' forkserver (:func:`dedupd.daemon.forkserver.worker_context`).

Every worker is forked from that server, so it starts with the decode and hash stack imported
(:func:`dedupd.daemon.encoder.prepare_process`) instead of paying for it itself: about 1-2 s per
worker on a busy machine, and the first files of every ``dedupd scan``. The compiled resize is
loaded later, by each worker once it has files enough to gain from it
(:data:`dedupd.daemon.encoder.ACCELERATE_AFTER_FILES`); only a cold numba cache is built here.
Everything loads on this one thread: loading the compiled resize on a second thread while this one
imported the hash stack saved ~0.5 s on a busy machine but raced Python's import machinery (numba
and the hash stack both import scipy: ``KeyError: 'scipy'`` in the clean-clone test run).
A failure here is logged and left to each worker, which prepares itself again on its first task.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

from dedupd.daemon import encoder

if sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules:  # the server, not an importer
    # the server exits when the daemon is gone (even after a kill -9): at once, not after tearing
    # down numba and scipy (~0.5 s on a busy machine). Registered last, this runs first; its workers
    # never run it (multiprocessing ends them with os._exit)
    atexit.register(os._exit, 0)

try:
    encoder.prepare_process()
except Exception:  # noqa: BLE001 - the workers retry (and report) it themselves
    logging.getLogger(__name__).warning("decode workers' preload failed; each worker loads its own", exc_info=True)

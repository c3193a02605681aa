"""Imported once by the decode pools' forkserver (:func:`dedupd.daemon.forkserver.worker_context`).

Every worker is forked from that server, so it starts with the decode and hash stack imported and
the compiled resize loaded (:func:`dedupd.daemon.encoder.prepare_process`) instead of paying for
them itself: about 1-2 s per worker on a busy machine, and the first files of every ``dedupd scan``.
The compiled resize loads on a thread while this one imports the hash stack: most of its cost is
LLVM linking the cached machine code, which runs without the GIL (measured on 2 busy cores: 1.5-2.1 s
instead of 2.3-2.5 s one after the other). The thread is joined before the server forks anything.
A failure here is logged and left to each worker, which prepares itself again on its first task.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading

if sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules:  # the server, not an importer
    # the server exits when the daemon is gone (even after a kill -9): at once, not after tearing
    # down numba and scipy (~0.5 s on a busy machine). Registered last, this runs first; its workers
    # never run it (multiprocessing ends them with os._exit)
    atexit.register(os._exit, 0)

_failed: list[BaseException] = []


def _load_compiled_resize() -> None:
    try:
        from dedupd.imaging import accelerate_small_images

        accelerate_small_images()
    except Exception as exc:  # noqa: BLE001 - logged below, on the importing thread
        _failed.append(exc)


def _preload() -> None:
    resize = threading.Thread(target=_load_compiled_resize, name="dedupd-preload-resize", daemon=True)
    resize.start()
    try:
        import numpy as np

        from dedupd.core.algorithms import HASH_METHODS
        from dedupd.encoding import hashes_of
        from dedupd.imaging import decode_array

        hashes_of(decode_array(np.zeros((8, 8, 3), np.uint8)), HASH_METHODS)  # imports scipy, PyWavelets
    finally:
        resize.join()
    if _failed:
        raise _failed[0]
    from dedupd.daemon import encoder

    encoder.prepare_process()  # all loaded by now: records it (and checks it) in milliseconds


try:
    _preload()
except Exception:  # noqa: BLE001 - the workers retry (and report) it themselves
    logging.getLogger(__name__).warning("decode workers' preload failed; each worker loads its own", exc_info=True)

"""The cyclic garbage collector paused around bulk work (a start-up load, a report build).

Such work makes hundreds of thousands of acyclic objects; meanwhile each full collection walks
every tracked object while holding the GIL. Measured at 100,000 files (2 loaded cores): half of
the load's CPU time, and stalls of 0.4-0.9 s for every other thread (the socket's ``status``)
during a report write; with the index frozen after the load (``gc.freeze`` in the daemon's
start-up) and report builds paused, 25-115 ms. Reference counting still frees what is not cyclic;
cycles made meanwhile are collected once the collector runs again (that deferred full collection
over what is not frozen still costs one stall, ~0.2 s measured once at 100k, somewhere later).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0  # pauses in progress (several threads may pause at once)
_resume = False  # the collector was on when the first of them began


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off until every overlapping pause has ended, then as it was before the first."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()

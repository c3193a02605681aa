"""The idle seal: what a clean stop leaves for a fast start, written while the daemon idles.

A clean stop seals ``groups.json`` (:mod:`dedupd.reports.seal`) and writes the index snapshot
(:mod:`dedupd.daemon.snapshot`), so the next start skips the store load (~8 s at a million files)
and the first full ``groups.json`` (~5 s). A crash (``kill -9``, power loss) leaves neither. Most
crashes of a NAS daemon come while nothing changes, so the ``idle-seal`` thread writes both once
the daemon has been idle for :func:`idle_seal_s` seconds: no store commit and no index change in
that time, nothing queued, settling or being linked, the graph complete and ``groups.json``
written. It writes at most once per store generation (the txnid both are stamped with). After
the next commit both stay usable by a start after a crash: the snapshot with the commits since it
replayed from the store's change journal (:mod:`dedupd.daemon.store.journal`), ``groups.json``
(each write turns its stamp into a floor seal, :mod:`dedupd.reports.seal`) with the replayed
files' groups recomputed; after the next idle interval both are written again.

Why 60 s by default: the write costs ~5 s of CPU at a million files (the snapshot's arrays and
135 MB written), so it must not follow every short pause of an ingest or of a user's edits; a
minute of quiet is a pause that is likely to last (the NAS case), and a crash within that minute
costs one ordinary (store) start. A write also waits :data:`SPACING` times the last one's time
after it: under a trickle of changes a million-file library writes its snapshot about every 10
minutes (~2 % of a core), not after each change. ``DEDUPD_IDLE_SEAL_S`` sets the interval (tests
use a second or two); 0 or less turns the idle seal off.

Correctness: both are captured in a :class:`~dedupd.daemon.snapshot.Window` opened before and
checked after the capture (see there): what is stamped with txnid T is what a start-up loading
the store at T builds. The snapshot's heavy part (arrays, file) is done outside the index lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from dedupd.daemon.snapshot import Window
from dedupd.reports.files import store_review
from dedupd.reports.seal import adoptable

logger = logging.getLogger(__name__)

IDLE_SEAL_S = 60.0
ENV = "DEDUPD_IDLE_SEAL_S"
#: how often the thread looks at the store's and the index's generations
POLL_S = 1.0
#: after a failed write (e.g. the disk is full): wait this long before the next attempt
RETRY_S = 60.0
#: after a write that took W seconds, the next waits at least this many times W: a library that
#: changes every few minutes (a trickle of uploads) rewrites its snapshot (135 MB at 1M, ~9 s)
#: at most every ~10 minutes, ~2 % of a core, not after every change
SPACING = 60.0


def idle_seal_s() -> float:
    """The idle interval (``DEDUPD_IDLE_SEAL_S``, else :data:`IDLE_SEAL_S`); 0 or less: off."""
    raw = os.environ.get(ENV)
    if raw is None or raw.strip() == "":
        return IDLE_SEAL_S
    try:
        return float(raw)
    except ValueError:
        logger.warning("%s=%r is not a number of seconds: using %s", ENV, raw, IDLE_SEAL_S)
        return IDLE_SEAL_S


class IdleSealer:
    """Watches a running daemon for idleness and seals then (see the module docstring).

    ``daemon`` gives ``store``, ``index``, ``config``, ``reports`` (the report writer) and
    ``graph`` (its :class:`~dedupd.daemon.graph.GraphKeeper`); ``idle()`` says whether nothing
    is pending and the reports are written; ``settled()`` whether the pipeline holds no work and
    the daemon is not stopping (a stop then waits for no idle write: it is abandoned, unstamped).
    """

    def __init__(self, daemon: Any, idle: Callable[[], bool], settled: Callable[[], bool],
                 interval: float | None = None) -> None:
        self.daemon = daemon
        self.idle = idle
        self.settled = settled
        self.interval = idle_seal_s() if interval is None else interval
        self.sealed_txnid: int | None = None  # the store generation both were last written (or found) for
        self.writes = 0
        self.next_write = 0.0  # monotonic time before which no write starts (SPACING x the last)

    def run(self, stop: threading.Event) -> None:
        """The ``idle-seal`` thread: until ``stop``."""
        if self.interval <= 0:
            return
        seen: tuple[int, int] | None = None
        since = time.monotonic()
        while not stop.wait(POLL_S):
            d = self.daemon
            now = (d.store.generation(), d.index.generation)
            if now != seen:
                seen, since = now, time.monotonic()
                continue
            if (now[0] == self.sealed_txnid or time.monotonic() - since < self.interval
                    or time.monotonic() < self.next_write or not self.idle()):
                continue
            t0 = time.monotonic()
            try:
                if self.seal_once():
                    self.next_write = time.monotonic() + SPACING * (time.monotonic() - t0)
            except Exception:
                if stop.is_set():
                    return  # the store closed under a write the shutdown gave up on: nothing stamped
                logger.exception("idle seal failed (a crash now means a full start); retrying in %d s", RETRY_S)
                stop.wait(RETRY_S)

    def seal_once(self) -> bool:
        """Seal ``groups.json`` and write the index snapshot if the daemon is still idle; True when
        both are now current for the store's generation (then not written again for it)."""
        d = self.daemon
        window = Window(d.store, d.index, self.settled)
        t0 = time.monotonic()
        config = d.config
        if adoptable(config.report_dir, d.store.path, window.txnid, config, store_review(d.store)) is None and not d.reports.seal(
                d.index, config, d.store, window):
            return False  # a write running, the groups unwritten or a change: the next idle period
        if d.graph.save(d.index, window) is None:
            return False  # a change during the capture
        self.sealed_txnid = window.txnid
        self.writes += 1
        logger.info("idle seal: groups.json and the index snapshot current",
                    extra={"txnid": window.txnid, "seconds": round(time.monotonic() - t0, 2)})
        return True

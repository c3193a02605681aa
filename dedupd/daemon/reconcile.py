"""The reconcile walk: bring the store in line with the disk (start-up, rescans, reloads).

A walk runs in its own thread and only queues work: every new or changed file becomes an
``upsert``, and the paths the walk did not see become one ``forget_missing`` item, re-checked on
the pipeline thread (a file may arrive through the watcher after the walk passed its folder).
A walk asked for while one runs is done again once it ends, so a reload that changes the roots
or the methods mid-walk is never dropped; a refresh (re-check every file under new encoder
settings) that a stop interrupts stays pending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dedupd.daemon.config import Config
from dedupd.daemon.index import MatchIndex
from dedupd.daemon.links import Links
from dedupd.daemon.pipeline import Work, recheck_for_pixel_limit, unreadable_cause_gone
from dedupd.daemon.store import Store
from dedupd.daemon.walk import walk_root

logger = logging.getLogger("dedupd.daemon")


class Reconciler:
    """Owns the walk thread and its progress (what ``dedupd status`` shows as ``reconcile_progress``)."""

    def __init__(self, store: Store, index: MatchIndex, queue: Callable[[Work], None],
                 spawn: Callable[[str, Callable[[], None]], threading.Thread],
                 stopping: Callable[[], bool], links: Links | None = None) -> None:
        self._store, self._index, self._queue, self._spawn, self._stopping = store, index, queue, spawn, stopping
        self._links = links if links is not None else Links()  # where the walk's symlinks point
        self.progress: dict[str, Any] = {"walked": 0, "queued": 0, "done": False}
        self.refresh = False  # the next walk re-checks every file (new encoder settings)
        self.again = False  # a walk was asked for while one ran
        self.runs = 0  # walks started: ``dedupd rescan --wait`` waits for a later one to finish
        self.last: dict[str, Any] | None = None  # the last walk that ended, and how (``dedupd status``)
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        """The last walk has ended (completely or not)."""
        return bool(self.progress.get("done"))

    @property
    def complete(self) -> bool:
        """The last walk saw every folder (it was not stopped early)."""
        return bool(self.progress.get("complete"))

    @property
    def due(self) -> bool:
        """Another walk is wanted once this one's work is processed."""
        return self.again or self.refresh

    def start(self, config: Config) -> bool:
        """Start a walk of ``config``'s roots; False (and one more walk later) if one is running."""
        if self._thread is not None and self._thread.is_alive():
            self.again = True
            return False
        self.again = False
        self.runs += 1
        self.progress = {"run": self.runs, "walked": 0, "queued": 0, "done": False, "started_at": round(time.time(), 3)}
        progress = self.progress
        self._thread = self._spawn("reconcile", lambda: self._run(config, progress))
        return True

    def _run(self, config: Config, progress: dict[str, Any]) -> None:
        try:
            progress["complete"] = self._walk(config, progress)
        finally:
            progress["done"] = True  # waiters never hang on a walk that stopped early
            now = time.time()
            outcome = "complete" if progress.get("complete") else "stopped" if self._stopping() else "failed"
            self.last = {**{k: v for k, v in progress.items() if k not in ("done", "complete")},
                         "outcome": outcome, "finished_at": round(now, 3),
                         "seconds": round(now - progress["started_at"], 2)}

    def _walk(self, config: Config, progress: dict[str, Any]) -> bool:
        """Queue every new or changed file and the vanished ones; False when stopped early."""
        seen: set[str] = set()
        refresh, self.refresh = self.refresh, False  # a reload during the walk sets it again
        progress["unlistable"] = 0

        def unlistable(folder: str, error: object) -> None:
            progress["unlistable"] += 1
            logger.warning("cannot list %s: %s", folder, error)

        for root in config.roots:
            for found in walk_root(root, config, on_dir_error=unlistable):
                if self._stopping():
                    self.refresh = self.refresh or refresh
                    return False
                seen.add(found.path)
                progress["walked"] += 1
                if found.link:
                    self._links.note(found.path)
                rec = self._store.get_file(found.path)
                unchanged = (found.st is not None and rec is not None and rec.same_stat(found.st) and not refresh
                             and not recheck_for_pixel_limit(rec, self._index.files.get(found.path), config.max_pixels))
                # an unchanged "ok" record that is not indexed (its encoding was lost) is re-checked
                if unchanged and rec is not None and not (rec.state == "ok" and found.path not in self._index.files) \
                        and not unreadable_cause_gone(found.path, rec):  # renamed to UTF-8, or made readable
                    continue
                self._queue(Work("upsert", found.path))
                progress["queued"] += 1
        gone = tuple(p for p, _ in self._store.iter_files() if p not in seen)
        if gone:
            self._queue(Work("forget_missing", paths=gone))
        progress["forgotten"] = len(gone)
        return True

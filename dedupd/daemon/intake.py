"""Intake: what the watcher reports becomes settle timers and pipeline work, and the roots' presence.

The watcher's sink (:class:`dedupd.daemon.watcher.EventSink`), called on watchdog's thread: a
created or written file (re)arms its settle timer; deletes and moves cancel pending timers and
queue ``delete``/``move`` work, so the store's record always follows its file. The main loop
calls :meth:`Intake.check_roots` (one ``stat`` per root) to notice a root that vanished or was
replaced, and to watch and walk it again once it is there.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import time
from collections.abc import Callable
from typing import Any

from dedupd.daemon.config import Config
from dedupd.daemon.pipeline import Pipeline, Work, unreadable_cause_gone
from dedupd.daemon.settle import Settler
from dedupd.daemon.watcher import Watcher
from dedupd.reports.files import EventLog

logger = logging.getLogger("dedupd.daemon")


class Intake:
    """File events → settle stage → pipeline work (one direction), and which roots are missing."""

    def __init__(self, settler: Settler, pipeline: Pipeline, events: EventLog, *, config: Callable[[], Config],
                 watcher: Callable[[], Watcher | None], rescan: Callable[[], None]) -> None:
        self._settler, self._pipeline, self._events = settler, pipeline, events
        self._config, self._watcher, self._rescan = config, watcher, rescan
        self._root_ids: dict[str, tuple[int, int] | None] = {}  # root → (dev, inode); None while missing
        self._root_history: dict[str, dict[str, Any]] = {}  # root → vanished (count), missing_since, back_at
        self._root_reasons: dict[str, str] = {}  # root → why it was last found missing

    def touched(self, path: str) -> None:
        self._settler.touch(path)
        self._links_changed([path])

    def deleted(self, path: str) -> None:
        self._settler.cancel(path)
        self._pipeline.put(Work("delete", path))
        self._links_changed([path])

    def _links_changed(self, targets: list[str], *, folders: bool = False) -> None:
        """The watched symlinks to ``targets`` (or into them, for ``folders``) changed with them."""
        for link in self._pipeline.links.to(targets, folders=folders):
            self._settler.touch(link)

    def mode_changed(self, path: str) -> None:
        """Look again at a file recorded unreadable for its permissions once they allow reading
        (a ``chmod`` changes neither its size nor its mtime, so nothing else would)."""
        rec = self._pipeline.store.get_file(path)
        if rec is not None and unreadable_cause_gone(path, rec):
            self._settler.touch(path)

    def deleted_dir(self, path: str) -> None:
        self._settler.cancel(path)  # a folder named like an image is recorded (as unreadable) too
        self._settler.cancel_prefix(path)
        self._pipeline.put(Work("delete_dir", path))
        self._links_changed([path], folders=True)
        root = path.rstrip("/")
        if self._root_ids.get(root) is not None:
            # a root itself: its watch died with it. The next root check watches and walks whatever
            # folder is there then (a folder recreated at once may even reuse the inode number)
            self._root_ids[root] = None
            self._vanished(root)
            logger.warning("watched folder %s was deleted: its files are forgotten; it is watched again (and "
                           "walked) once it is there", root, extra={"root": root})
            self._events.append("root_missing", path=root)

    def moved(self, src: str, dst: str) -> None:
        # the store's record of ``src`` (an edit of it may still be settling) goes with it; the move
        # then has ``dst`` checked against the disk once settled, so no old name or content remains
        self._settler.cancel(src)
        self._pipeline.put(Work("move", src, dst))
        self._links_changed([src, dst])

    def moved_dir(self, src: str, dst: str) -> None:
        for p in self._settler.cancel_prefix(src):
            self._settler.touch(dst.rstrip("/") + "/" + p[len(src.rstrip("/")) + 1:])
        self._pipeline.put(Work("move_dir", src, dst))
        self._links_changed([src, dst], folders=True)

    def arrived_dir(self, path: str) -> None:
        """A folder moved in from outside the roots (or from an excluded folder): walk it."""
        self._pipeline.put(Work("scan_dir", path))
        self._links_changed([path], folders=True)

    def overflowed(self) -> None:
        self._rescan()

    def _vanished(self, root: str) -> None:
        h = self._root_history.setdefault(root, {"vanished": 0, "missing_since": None, "back_at": None})
        h["vanished"] += 1
        h["missing_since"] = round(time.time(), 3)

    def roots(self) -> list[dict[str, Any]]:
        """Each configured root: present or not, and its history since start (for ``dedupd status``)."""
        out = []
        for r in self._config().roots:
            h = self._root_history.get(r.path, {})
            out.append({"path": r.path, "present": self._root_ids.get(r.path) is not None,
                        "reference": r.reference, "vanished": h.get("vanished", 0),
                        "missing_since": h.get("missing_since"), "back_at": h.get("back_at")})
        return out

    def missing_roots(self) -> list[str]:
        """The roots that are gone, not folders, or cannot be listed (each with its reason in :meth:`why_missing`)."""
        roots = {r.path for r in self._config().roots}
        return sorted(p for p, ident in self._root_ids.items() if ident is None and p in roots)

    def why_missing(self, root: str) -> str:
        return self._root_reasons.get(root, "missing")

    def _look(self, path: str) -> tuple[int, int] | None:
        """The root's (device, inode) when it is a folder this process can list, else None (the
        reason kept for :meth:`why_missing`)."""
        try:
            st = os.stat(path)
            if not stat_mod.S_ISDIR(st.st_mode):
                self._root_reasons[path] = "not a folder"
                return None
            with os.scandir(path):  # an unreadable folder is as good as gone: nothing in it can be indexed
                pass
        except OSError as exc:
            gone = isinstance(exc, FileNotFoundError)
            self._root_reasons[path] = "missing" if gone else f"cannot be listed: {exc.strerror}"
            return None
        return st.st_dev, st.st_ino

    def check_roots(self) -> None:
        """Notice a root that vanished (forget its files, drop its dead watch) or reappeared or was
        replaced by a new folder (watch it again, walk it). Called from the main loop: one stat and
        one open per root. A root this process cannot list counts as missing."""
        for root in self._config().roots:
            ident = self._look(root.path)
            if root.path not in self._root_ids:
                self._root_ids[root.path] = ident  # first look (start-up)
                if ident is None:
                    self._vanished(root.path)
                    logger.warning("watched folder %s: %s; watching it once it is there and readable", root.path,
                                   self.why_missing(root.path))
                continue
            known = self._root_ids[root.path]
            if ident == known:
                continue
            self._root_ids[root.path] = ident
            if known is not None:
                self._vanished(root.path)  # gone, or replaced by another folder (then back at once)
                logger.warning("watched folder %s vanished, was replaced or cannot be listed (%s): its files are "
                               "forgotten; it is watched again (and walked) once it is there and readable",
                               root.path, self.why_missing(root.path), extra={"root": root.path})
                self._events.append("root_missing", path=root.path)
                if (watcher := self._watcher()) is not None:
                    watcher.unwatch(root.path)
                self._settler.cancel_prefix(root.path)
                self._pipeline.put(Work("delete_dir", root.path))
            if ident is not None:
                h = self._root_history.get(root.path)
                if h is not None and h["missing_since"] is not None:
                    h["missing_since"], h["back_at"] = None, round(time.time(), 3)
                logger.info("watched folder %s is back: watching and walking it", root.path,
                            extra={"root": root.path})
                self._events.append("root_back", path=root.path)
                if (watcher := self._watcher()) is not None:
                    watcher.rewatch(root.path)
                self._pipeline.put(Work("scan_dir", root.path))

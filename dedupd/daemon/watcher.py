"""watchdog (inotify) → the pipeline's vocabulary: touched, deleted, moved (files and folders).

Plain "created" is treated like "modified": both only (re)arm the settle timer, so a half-written
file is never read. Events inside the store, report and quarantine folders, or for names the
config does not want, are dropped here.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from dedupd.daemon.config import Config, RootConfig
from dedupd.daemon.walk import is_watched_file, root_of

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    def touched(self, path: str) -> None: ...
    def deleted(self, path: str) -> None: ...
    def deleted_dir(self, path: str) -> None: ...
    def moved(self, src: str, dst: str) -> None: ...
    def moved_dir(self, src: str, dst: str) -> None: ...
    def arrived_dir(self, path: str) -> None: ...
    def overflowed(self) -> None: ...


def _s(p: str | bytes) -> str:
    return os.fsdecode(p)


class _Handler(FileSystemEventHandler):
    def __init__(self, config: Config, sink: EventSink) -> None:
        self.config = config
        self.sink = sink

    def _in_roots_dir(self, path: str) -> bool:
        return root_of(path.rstrip("/") + "/x", self.config) is not None and not self.config.skips_dir(path)

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # never let one odd event kill the observer thread
            logger.exception("watch event %s could not be handled", event)

    def _dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = _s(event.src_path)
        if kind in ("opened", "closed_no_write", "attrib"):
            return
        if event.is_directory:
            if kind == "deleted":
                self.sink.deleted_dir(src)
            elif kind == "moved":
                dst = _s(event.dest_path)
                if event.is_synthetic:
                    return
                src_in, dst_in = self._in_roots_dir(src), self._in_roots_dir(dst)
                if src_in and dst_in:
                    self.sink.moved_dir(src, dst)
                elif src_in:
                    self.sink.deleted_dir(src)
                elif dst_in:
                    self.sink.arrived_dir(dst)  # from an excluded folder: no events for its files
            elif kind == "created" and is_watched_file(src, self.config):
                self.sink.touched(src)  # a folder with an image's name: recorded as unreadable
            return
        if kind == "moved":
            if event.is_synthetic:
                return  # sub-events of a folder move: handled by moved_dir
            dst = _s(event.dest_path)
            src_in, dst_in = is_watched_file(src, self.config), is_watched_file(dst, self.config)
            if src_in and dst_in:
                self.sink.moved(src, dst)
            elif src_in:
                self.sink.deleted(src)
            elif dst_in:
                self.sink.touched(dst)
        elif kind == "deleted":
            if root_of(src, self.config) is not None:
                self.sink.deleted(src)
        elif kind in ("created", "modified", "closed"):
            if is_watched_file(src, self.config):
                self.sink.touched(src)


class Watcher:
    """Owns the watchdog observer for every configured root."""

    def __init__(self, config: Config, sink: EventSink) -> None:
        self.config = config
        self.sink = sink
        self._observer: Observer | None = None
        self._handler = _Handler(config, sink)
        self._watches: dict[str, ObservedWatch] = {}

    def start(self) -> None:
        observer = Observer()
        observer.daemon = True
        self._observer = observer
        for root in self.config.roots:
            self._schedule(root)
        observer.start()

    def _schedule(self, root: RootConfig) -> bool:
        assert self._observer is not None
        try:
            self._watches[root.path] = self._observer.schedule(self._handler, root.path, recursive=root.recursive)
            return True
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                logger.error(
                    "inotify watch limit reached while watching %s: raise it with "
                    "'sysctl fs.inotify.max_user_watches=524288' (and in /etc/sysctl.d); "
                    "until then changes are found by the periodic rescan only",
                    root.path,
                )
            elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
                logger.warning("watched folder %s does not exist; it is watched once it appears", root.path)
            else:
                logger.error("cannot watch %s: %s; changes there are found by the periodic rescan only",
                             root.path, exc)
            return False

    def unwatch(self, root_path: str) -> None:
        """Drop the watch of a root (it vanished: the kernel watch is gone or follows a moved folder)."""
        watch = self._watches.pop(root_path, None)
        if watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                pass  # already gone with its folder

    def rewatch(self, root_path: str) -> bool:
        """Watch a root again (it reappeared); True when the watch is in place."""
        self.unwatch(root_path)
        root = next((r for r in self.config.roots if r.path == root_path), None)
        return root is not None and self._observer is not None and self._schedule(root)

    def stop(self, timeout: float = 5.0) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
            self._watches.clear()

"""watchdog (inotify) → the pipeline's vocabulary: touched, deleted, moved (files and folders).

Plain "created" is treated like "modified": both only (re)arm the settle timer, so a half-written
file is never read. Events inside the store, report and quarantine folders, or for names the
config does not want, are dropped here.
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
from collections.abc import Callable
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from dedupd.daemon.config import Config, RootConfig
from dedupd.daemon.walk import is_watched_dir, is_watched_file, root_of

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    def touched(self, path: str) -> None: ...
    def deleted(self, path: str) -> None: ...
    def deleted_dir(self, path: str) -> None: ...
    def moved(self, src: str, dst: str) -> None: ...
    def moved_dir(self, src: str, dst: str) -> None: ...
    def arrived_dir(self, path: str) -> None: ...
    def mode_changed(self, path: str) -> None: ...
    def overflowed(self) -> None: ...


def _s(p: str | bytes) -> str:
    return os.fsdecode(p)


class _Handler(FileSystemEventHandler):
    def __init__(self, config: Config, sink: EventSink) -> None:
        self.config = config
        self.sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:  # never let one odd event kill the observer thread
            logger.exception("watch event %s could not be handled", event)

    def _dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = _s(event.src_path)
        if kind in ("opened", "closed_no_write"):
            return
        if kind == "attrib":  # a chmod, chown, utime: only a file refused for its permissions cares
            if not event.is_directory and is_watched_file(src, self.config):
                self.sink.mode_changed(src)
            return
        if event.is_directory:
            if kind == "deleted":
                self.sink.deleted_dir(src)
            elif kind == "moved":
                dst = _s(event.dest_path)
                if event.is_synthetic:
                    return
                src_in, dst_in = is_watched_dir(src, self.config), is_watched_dir(dst, self.config)
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


def _observer(on_overflow: Callable[[], None]) -> BaseObserver:
    """watchdog's observer; on Linux with two repairs to its inotify bookkeeping (watchdog 7.x):

    * a folder moved out of the roots keeps its kernel watch and its old path in watchdog's table;
      moved back in under another name, the watch is re-added with the new path but the old path's
      entry stays, and a later rename of the old parent "moves" that entry too, re-labelling the
      returned folder's watch with a wrong path (new files missed, deleted ones kept: event storm).
      A re-added watch now drops the stale entry of its old path.
    * a folder created just before its parent is renamed is looked up by its old path when watchdog
      handles its creation, so it is never watched; after a folder move, unwatched sub-folders under
      the new name are watched.
    * a kernel queue overflow is only logged by watchdog; it now also asks for a rescan, since
      events were lost.

    Falls back to the plain observer when watchdog's internals are not the expected ones.
    """
    try:
        from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup
        from watchdog.observers.inotify_c import InotifyConstants, Mask
    except ImportError:  # not Linux
        return Observer()
    needed = ("_add_callback", "_move_watches", "on_queue_overflow", "_inotify_fd")
    if not all(hasattr(InotifyWatchGroup, a) or a in getattr(InotifyWatchGroup, "__dataclass_fields__", {})
               for a in needed) or not hasattr(InotifyEmitter, "get_event_mask_from_filter"):
        return Observer()

    class Group(InotifyWatchGroup):
        def _add_callback(self, path: bytes) -> None:
            try:
                wd = self._inotify_fd.add_callback(path, self.event_mask, self._callback, self._id)
            except OSError:
                if path == self.path:
                    raise
                return
            stale = self._active_callbacks_by_watch.get(wd)
            if stale is not None and stale != path and self._active_callbacks_by_path.get(stale) == wd:
                del self._active_callbacks_by_path[stale]
                prefix = stale + b"/"  # its sub-folders' old entries, unless re-added since
                for p, sub in list(self._active_callbacks_by_path.items()):
                    if p.startswith(prefix) and self._active_callbacks_by_watch.get(sub) != p:
                        del self._active_callbacks_by_path[p]
            self._active_callbacks_by_path[path] = wd
            self._active_callbacks_by_watch[wd] = path

        def _move_watches(self, move_src_path: bytes, move_dst_path: bytes) -> bool:
            moved = super()._move_watches(move_src_path, move_dst_path)
            if moved and self.is_recursive:
                # a sub-folder created just before the move was looked up by its old path once the
                # move had happened, so it is not watched: watch what is under the new name now
                for dirpath, dirnames, _ in os.walk(move_dst_path, followlinks=self.follow_symlink):
                    for name in dirnames:
                        full = os.path.join(dirpath, name)
                        if full not in self._active_callbacks_by_path and (
                                self.follow_symlink or not os.path.islink(full)):
                            self._add_callback(full)
            return moved

        def on_queue_overflow(self) -> None:
            super().on_queue_overflow()
            on_overflow()

    class Emitter(InotifyEmitter):
        def get_event_mask_from_filter(self) -> Mask:
            # every read of a watched file raises IN_OPEN and IN_CLOSE_NOWRITE, the daemon's own
            # too (digest, decode, thumbnail: six events a new file), and the handler drops them:
            # the kernel is not asked for them at all. A burst of 1,500 640 px photos (quiet
            # machine, 3 alternating rounds): the main process 0.77 -> 0.39-0.53 ms of CPU a file,
            # the default config with 2 workers 254 -> 263 files/s
            return Mask(super().get_event_mask_from_filter() & ~(InotifyConstants.IN_OPEN | InotifyConstants.IN_CLOSE_NOWRITE))

        def on_thread_start(self) -> None:
            self._inotify = Group(self._inotify_fd, os.fsencode(self.watch.path),
                                  is_recursive=self.watch.is_recursive,
                                  event_mask=self.get_event_mask_from_filter(),
                                  follow_symlink=self.watch.follow_symlink)

    observer = InotifyObserver()
    observer._emitter_class = Emitter
    return observer


class Watcher:
    """Owns the watchdog observer for every configured root."""

    def __init__(self, config: Config, sink: EventSink) -> None:
        self.config = config
        self.sink = sink
        self._observer: BaseObserver | None = None
        self._handler = _Handler(config, sink)
        self._watches: dict[str, ObservedWatch] = {}

    def start(self) -> None:
        # watchdog warns each time a folder's watch is registered again (a folder moved back in, a
        # rebuild after an overflow), with its whole watch table in the message: megabytes of log
        # on a big library, for a harmless re-registration
        warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning,
                                module=r"(watchdog|dedupd\.daemon\.watcher)")
        observer = _observer(self.sink.overflowed)
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

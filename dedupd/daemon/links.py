"""Which watched symlinks point at which watched files.

A symlinked file is indexed with its target's bytes (the walk follows links to files inside the
roots), but the kernel reports a change of the target only, under the target's name. The intake asks
this registry for the links to a changed, moved or deleted path, and looks at them again too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable


class Links:
    """``target → symlinks`` of the symlinks seen by the walk and the pipeline (thread-safe).

    An entry may outlive its link (deleted, or replaced by a plain file): looking at such a path
    again costs one ``stat``, so entries are dropped only when the link's path is forgotten.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._to: dict[str, set[str]] = {}  # target's real path -> symlink paths
        self._of: dict[str, str] = {}  # symlink path -> target's real path

    def note(self, link: str) -> None:
        """Remember where ``link`` (a path that is a symlink) resolves to now."""
        target = _resolved(link)
        if target is None:
            return
        with self._lock:
            old = self._of.get(link)
            if old == target:
                return
            if old is not None:
                self._to[old].discard(link)
            self._of[link] = target
            self._to.setdefault(target, set()).add(link)

    def forget(self, links: Iterable[str]) -> None:
        with self._lock:
            for link in links:
                target = self._of.pop(link, None)
                if target is not None:
                    self._to[target].discard(link)
                    if not self._to[target]:
                        del self._to[target]

    def to(self, paths: Iterable[str], *, folders: bool = False) -> list[str]:
        """The symlinks resolving to any of ``paths`` (``folders``: or to a file under one of them)."""
        if not self._to:  # the usual case (no watched symlink): no path resolved for each event
            return []
        wanted = [r for p in paths if (r := _resolved(p)) is not None]
        with self._lock:
            found = {link for p in wanted for link in self._to.get(p, ())}
            if folders:
                prefixes = tuple(p.rstrip("/") + "/" for p in wanted)
                found.update(link for target, links in self._to.items() if target.startswith(prefixes)
                             for link in links)
        return sorted(found)


def _resolved(path: str) -> str | None:
    """``os.path.realpath``, or None when a link along the path changes while it is read (the
    call then raises, e.g. EINVAL from ``readlink``)."""
    try:
        return os.path.realpath(path)
    except OSError:
        return None

"""Settle/debounce stage: a file is handed on only once its size and mtime stop changing.

Uploads arrive in pieces; inotify reports every write. Each event (re)arms a per-path timer of
``settle_s``; when it fires the file is stat'ed again, and only when (size, mtime) are the same as
at the previous look is it emitted. A path that vanished is emitted too (the consumer forgets it).

No I/O happens under the lock: ``stat`` can block for seconds on a slow or network mount, and the
watcher thread (``touch``/``cancel``) must never wait for it. A timer that fired is looked at
outside the lock and its outcome applied only if nobody re-armed or cancelled it meanwhile.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable


class Settler:
    """Thread-safe debounce of paths; call :meth:`run` in its own thread, :meth:`stop` to end."""

    def __init__(
        self,
        settle_s: float,
        emit: Callable[[str], None],
        *,
        stat: Callable[[str], os.stat_result] = os.stat,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settle_s = settle_s
        self._emit = emit
        self._stat = stat
        self._clock = clock
        self._cond = threading.Condition()
        self._due: dict[str, tuple[float, tuple[int, int] | None]] = {}
        self._heap: list[tuple[float, str]] = []
        self._emitting = 0  # settled, being handed on: still pending, so "idle" never comes early
        self._stopped = False

    def _signature(self, path: str) -> tuple[int, int] | None:
        try:
            st = self._stat(path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def touch(self, path: str) -> None:
        """(Re)start the settle timer of ``path``."""
        sig = self._signature(path)  # outside the lock: stat may block
        with self._cond:
            due = self._clock() + self.settle_s
            self._due[path] = (due, sig)
            heapq.heappush(self._heap, (due, path))
            self._cond.notify()

    def cancel(self, path: str) -> bool:
        """Drop a pending path (it was deleted or moved away); True when it was pending."""
        with self._cond:
            return self._due.pop(path, None) is not None

    def cancel_prefix(self, directory: str) -> list[str]:
        """Drop every pending path under ``directory``; returns them."""
        prefix = directory.rstrip("/") + "/"
        with self._cond:
            gone = [p for p in self._due if p.startswith(prefix)]
            for p in gone:
                del self._due[p]
            return gone

    def pending(self) -> int:
        with self._cond:
            return len(self._due) + self._emitting

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def run(self) -> None:
        """Emit settled paths until :meth:`stop`."""
        while True:
            fired: list[tuple[str, float, tuple[int, int] | None]] = []
            with self._cond:
                if self._stopped:
                    return
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    due, path = heapq.heappop(self._heap)
                    current = self._due.get(path)
                    if current is None or current[0] != due:
                        continue  # cancelled or re-armed later
                    fired.append((path, due, current[1]))
                if not fired:
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(timeout=timeout if timeout is None else max(0.0, min(timeout, 1.0)))
                    continue
            looked = [(path, due, before, self._signature(path)) for path, due, before in fired]  # no lock held
            ready: list[str] = []
            with self._cond:
                now = self._clock()
                for path, due, before, sig in looked:
                    current = self._due.get(path)
                    if current is None or current[0] != due:
                        continue  # cancelled or re-armed while we looked: that decision wins
                    if sig is not None and sig != before:
                        again = now + self.settle_s  # still being written: look again later
                        self._due[path] = (again, sig)
                        heapq.heappush(self._heap, (again, path))
                        continue
                    del self._due[path]
                    ready.append(path)
                self._emitting += len(ready)
            for path in ready:
                try:
                    self._emit(path)
                finally:
                    with self._cond:
                        self._emitting -= 1

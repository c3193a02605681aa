"""Order-preserving process-pool map with an optional progress line on a terminal."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """CPUs this process may use (computed at call time, never at import)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


class Progress:
    """A one-line ``label: done/total`` counter on stderr, shown only when stderr is a terminal."""

    def __init__(self, total: int, label: str, enabled: bool = True) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled and sys.stderr.isatty() and total > 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and (self.done == self.total or self.done % 16 == 0):
            sys.stderr.write(f"\r{self.label}: {self.done}/{self.total}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def pmap(
    func: Callable[[T], R],
    items: Sequence[T] | Iterable[T],
    workers: int | None,
    *,
    label: str = "",
    verbose: bool = False,
    chunksize: int = 16,
) -> list[R]:
    """``[func(x) for x in items]``, in a process pool when ``workers`` > 1 and there is work.

    ``workers`` None means every available CPU; 0 or 1 runs in this process. ``func`` must be
    picklable (a module-level function or a bound method of a picklable object).
    """
    items = list(items)
    n = default_workers() if workers is None else max(1, int(workers))
    n = min(n, len(items))
    progress = Progress(len(items), label, verbose)
    if n <= 1:
        out = []
        for x in items:
            out.append(func(x))
            progress.advance()
        return out
    with multiprocessing.get_context().Pool(processes=n) as pool:
        out = []
        for r in pool.imap(func, items, chunksize):
            out.append(r)
            progress.advance()
        return out

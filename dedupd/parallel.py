"""Process pools for the library: how many workers, how they start, and the progress bar.

* :func:`available_cpus` is the one place that decides "all CPUs": the CPUs this process may run
  on (``os.sched_getaffinity``), capped by the cgroup CPU quota (``/sys/fs/cgroup/cpu.max``, or
  cgroup v1's ``cpu.cfs_quota_us``) so a container limited to 2 CPUs on a 64-core host starts 2.
* :func:`pool_context` forks only a process that has not loaded torch and runs no other thread (as
  imagededup does, so unguarded scripts work); any other starts its workers from a ``forkserver``
  (``spawn`` where there is none), so a process with torch or threads is never duplicated.
* :class:`Progress` draws a tqdm-style bar on stderr, terminal or not, as imagededup's
  ``verbose=True`` does (CI logs and captured output see the final count too).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, TextIO, TypeVar

from dedupd.errors import DedupdError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


class WorkerCountError(DedupdError, TypeError):
    """A worker count that is not an int (imagededup's pool raised ``TypeError`` there too)."""


def cgroup_cpu_limit(v2: Path = _CGROUP_V2, v1: tuple[Path, Path] = _CGROUP_V1) -> int | None:
    """CPUs allowed by the cgroup quota, rounded up; None when there is no quota (or no cgroup)."""
    try:
        quota, period = v2.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = v1[0].read_text().strip(), v1[1].read_text().strip()
        except OSError:
            return None
    if quota == "max" or quota.startswith("-"):
        return None
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup quota (at least 1).

    Computed at call time, never at import, so a changed affinity or quota is seen.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cpus, limit) if limit else cpus)


#: Former name of :func:`available_cpus`.
default_workers = available_cpus


def fork_is_safe() -> bool:
    """Whether this process may be forked: it has not loaded torch and runs no other thread."""
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and "torch" not in sys.modules
        and threading.active_count() == 1
    )


def pool_context() -> BaseContext:
    """The start method of a library pool, chosen when the pool starts.

    ``fork`` (what imagededup does, so scripts without an ``if __name__ == "__main__":`` guard keep
    working) only while :func:`fork_is_safe`; otherwise ``forkserver`` (``spawn`` where there is none),
    so a process that has loaded torch or started threads is never duplicated.
    """
    if fork_is_safe():
        return multiprocessing.get_context("fork")
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class WorkerDiedError(DedupdError):
    """A worker process died while working (killed, out of memory, a crash in a decoder)."""


def imap_ordered(
    func: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    *,
    chunksize: int = 1,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    fallback: Callable[[T], R] | None = None,
) -> Iterator[R]:
    """``func`` over ``items`` in ``workers`` processes of :func:`pool_context`, results in order.

    When the workers cannot even start — typically a script without an ``if __name__ ==
    "__main__":`` guard, which a forkserver or spawn worker re-imports — a warning says so and
    ``fallback`` (default ``func``) runs over the items in this process instead.

    Raises:
        WorkerDiedError: a worker died after results had started to arrive.
    """
    produced = False
    try:
        with cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=pool_context(), initializer=initializer, initargs=initargs
        ) as pool:
            for result in pool.map(func, items, chunksize=chunksize):
                produced = True
                yield result
        return
    except BrokenProcessPool as exc:
        if produced:
            raise WorkerDiedError(
                f"a worker process died while working ({exc}); the input it was given may crash the decoder: "
                "retry with num_enc_workers=0 to see which file"
            ) from exc
    logger.warning(
        "worker processes could not start, so this process does the work. If this is a script, put its code "
        "under `if __name__ == \"__main__\":` (workers started without fork import the main module), or pass "
        "num_enc_workers=0."
    )
    yield from map(fallback or func, items)


def check_workers(value: Any, name: str) -> None:
    """A worker count must be an int (negative and 0 mean "no extra process") or None ("every CPU").

    Raises:
        WorkerCountError: anything else, naming the parameter.
    """
    if value is not None and not isinstance(value, int):
        raise WorkerCountError(
            f"{name} must be an int (0: no worker processes, None: one per available CPU), got {value!r}"
        )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """A tqdm-style bar on stderr: ``label:  40%|####      | 4/10 [00:01<00:01, 3.98it/s]``.

    Drawn at start, then at most every ``interval`` seconds, and once more with a newline by
    :meth:`close` (or the end of a ``with`` block); written whether or not stderr is a terminal,
    unless ``terminal_only``.
    """

    def __init__(
        self, total: int, label: str = "", enabled: bool = True, *, terminal_only: bool = False,
        interval: float = 0.1, stream: TextIO | None = None,
    ) -> None:
        self.total, self.label, self.done, self.interval = total, label, 0, interval
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled) and (not terminal_only or self.stream.isatty())
        self.start = self.last = time.monotonic()
        self.closed = False
        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        self.fill = "█" if encoding.startswith("utf") else "#"
        if self.enabled:
            self._draw()

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done else None
        speed = f"{rate:.2f}it/s" if rate else "?it/s"
        prefix = f"{self.label}: " if self.label else ""
        if not self.total:
            return f"{prefix}{self.done}it [{_clock(elapsed)}, {speed}]"
        frac = min(1.0, self.done / self.total)
        bar = (self.fill * int(frac * 10)).ljust(10)
        left = _clock((self.total - self.done) / rate) if rate else "?"
        return f"{prefix}{frac * 100:3.0f}%|{bar}| {self.done}/{self.total} [{_clock(elapsed)}<{left}, {speed}]"

    def _draw(self, end: str = "") -> None:
        try:
            self.stream.write("\r" + self._line() + end)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr never fails the work
            self.enabled = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                self._draw()

    def close(self) -> None:
        if self.enabled and not self.closed:
            self._draw("\n")
        self.closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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

    ``workers`` None means :func:`available_cpus`; 0, 1 or less runs in this process. ``func`` must
    be picklable (a module-level function or a bound method of a picklable object): workers start
    from :func:`pool_context` (see :func:`imap_ordered`).

    Raises:
        WorkerCountError: ``workers`` is neither an int nor None.
    """
    check_workers(workers, "workers")
    items = list(items)
    n = available_cpus() if workers is None else max(1, int(workers))
    n = min(n, len(items))
    with Progress(len(items), label, verbose) as progress:
        if n <= 1:
            out = []
            for x in items:
                out.append(func(x))
                progress.advance()
            return out
        out = []
        for r in imap_ordered(func, items, n, chunksize=chunksize):
            out.append(r)
            progress.advance()
        return out

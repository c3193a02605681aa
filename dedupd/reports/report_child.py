"""The report child (``python -m dedupd.reports.report_child REPORT_DIR``): reads a job from stdin
and writes ``duplicates.json`` and ``report.html`` (see :mod:`dedupd.reports.offline`)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from dedupd.reports.offline import (
    FRAME_HEAD,
    PARENT_POLL_S,
    PATH_CODEC,
    TMP_PREFIX,
    ChildFailed,
    ChildSnapshot,
    Facts,
    Files,
)


def _read_frame(f: IO[bytes]) -> bytes:
    head = f.read(FRAME_HEAD.size)
    if len(head) != FRAME_HEAD.size:
        raise ChildFailed("the job ended early (the daemon stopped?)")
    (n,) = FRAME_HEAD.unpack(head)
    data = f.read(n)
    if len(data) != n:
        raise ChildFailed("the job ended early (the daemon stopped?)")
    return data


def _section(f: IO[bytes]) -> Iterator[bytes]:
    while frame := _read_frame(f):
        yield frame


def read_job(f: IO[bytes]) -> tuple[dict[str, Any], ChildSnapshot, list[bytes]]:
    """(header, snapshot, groups' lines in frames) of a job read from ``f`` (the lines are parsed
    once ``duplicates.json`` is written and the paths are dropped: a lower peak of memory)."""
    head = json.loads(_read_frame(f))
    paths: list[str] = []
    for frame in _section(f):
        paths.extend(frame.decode(*PATH_CODEC).split("\0"))
    dups: dict[str, list[str]] = {}
    for frame in _section(f):
        dups.update(json.loads(frame))
    facts: dict[str, Facts] = {}
    for frame in _section(f):
        facts.update((p, Facts(*v)) for p, v in json.loads(frame).items())
    return head, ChildSnapshot(Files(paths, facts), dups), list(_section(f))


def cached_thumbnails(missing: list[tuple[str, str]]) -> Callable[..., dict[str, str | None]]:
    """A stand-in for :func:`~dedupd.reports.thumbnails.ensure_thumbnails` that decodes nothing:
    cached thumbnails (or failure markers) by name, None for the others, which go to ``missing``."""
    from dedupd.reports.thumbnails import _cached

    def lookup(items: Iterable[tuple[str, bytes | str]], cache_dir: str, *, mode: int, **_: Any
               ) -> dict[str, str | None]:
        paths: dict[str, str] = {}
        results: dict[str, str | None] = {}
        for path, digest in items:
            hx = paths[path] = digest.hex() if isinstance(digest, bytes) else digest
            if hx not in results:
                known, results[hx] = _cached(cache_dir, hx, mode)
                if not known:
                    missing.append((path, hx))
        return {p: results[hx] for p, hx in paths.items()}

    return lookup


def _watch_parent(parent: int) -> None:
    """End this process when the daemon that started it is gone (its temp file stays: the next
    child removes it)."""
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(3)


def peak_rss_kb() -> int:
    """This process's peak resident memory since its ``exec`` (``VmHWM``; ``ru_maxrss`` would count
    the daemon's pages that the ``vfork`` before the ``exec`` shared), 0 if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def child_main(report_dir: str, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Read a job from ``stdin``, write both reports in ``report_dir``, answer on ``stdout``."""
    import gc

    from dedupd.daemon.config import KeepRule
    from dedupd.reports.atomic import write_atomic
    from dedupd.reports.files import duplicates_json
    from dedupd.reports.html import write_html_report

    gc.disable()  # hundreds of thousands of acyclic objects, one short-lived process
    head, snapshot, frames = read_job(stdin)
    config = types.SimpleNamespace(keep=[KeepRule(k, p) for k, p in head["keep"]], max_pixels=head["max_pixels"],
                                   report_mode=head["report_mode"], dry_run=head["dry_run"])
    write_atomic(os.path.join(report_dir, "duplicates.json"), duplicates_json(snapshot, sorted),  # type: ignore[arg-type]
                 config.report_mode, prefix=TMP_PREFIX)
    snapshot.drop_paths()
    groups: list[dict[str, Any]] = []
    while frames:
        groups.extend(map(json.loads, frames.pop(0).split(b"\n")))
    missing: list[tuple[str, str]] = []
    write_html_report(os.path.join(report_dir, "report.html"), snapshot, config, _Manifest(head["entries"]),
                      groups=groups, on_thumbnails=lambda: None, thumbnails=cached_thumbnails(missing),
                      tmp_prefix=TMP_PREFIX)
    stdout.write(json.dumps({"missing": missing, "peak_rss_kb": peak_rss_kb()}).encode())
    stdout.flush()


class _Manifest:
    """The quarantine manifest as the daemon read it, for :func:`write_html_report` (``store``)."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def iter_quarantine(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)


def main() -> None:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    child_main(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()

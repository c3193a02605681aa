"""``duplicates.json`` and ``report.html`` written by a child process, outside the daemon's interpreter.

At a million files the two cost ~12 s of CPU per write (sorting and encoding a million keys,
parsing and encoding ~100k groups); in the daemon that time shares the GIL with the socket, the
pipeline and the ``groups.json`` writer. Here the daemon only streams what they are made of to
``python -m dedupd.reports.report_child`` over a pipe: every indexed path (NUL-separated), each group
member's duplicate paths and file facts, the groups' encoded lines and the quarantine manifest
(JSON; no pickle) — ~1 s of its CPU at a million files, with pauses between frames where a due
``groups.json`` write goes first. The child writes both files atomically (temp file, fsync,
rename) with the same functions, so their bytes are those of an in-process write.

The child decodes no image: thumbnails already cached are linked, the others are shown as
placeholders and handed back to the daemon, whose worker processes make them (as in process).
A child killed mid-write leaves the previous reports intact (its temp file is removed before the
next child starts); a child whose daemon died stops within a fraction of a second.

Wire format on the child's stdin: frames of an 8-byte big-endian length and that many bytes. The
first frame is a JSON header; then four sections, each ended by an empty frame: paths (NUL-joined,
UTF-8 with surrogate escapes), duplicates (JSON objects ``{path: [dup path, ...]}``), facts (JSON
objects ``{path: [width, height, size, mtime_ns, digest hex]}``), group lines (newline-joined). The
child answers one JSON object on stdout: ``{"missing": [[path, digest hex], ...]}``.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from dedupd.daemon.slices import keys_of
from dedupd.errors import DedupdError

TMP_PREFIX = ".tmp-slow-"
#: indexed files from which the daemon writes the two reports in a child (below, a child's start-up,
#: ~0.3 s quiet and seconds on a loaded machine, costs more than the write: ~0.5 s of CPU at 50k);
#: the environment variable sets another count (0: always)
CHILD_MIN_FILES = 50_000
CHILD_MIN_FILES_ENV = "DEDUPD_REPORT_CHILD_FILES"
#: paths per frame of the paths section; members per frame of the others (one ``json.dumps`` of
#: 2,048 members' lists held the GIL up to 19 ms at 1M, ``bench/bench_gil.py``)
PATHS_STEP = 8192
MEMBERS_STEP = 512
#: how often the child looks whether its daemon is still there (s)
PARENT_POLL_S = 0.2
FRAME_HEAD = struct.Struct(">Q")
PATH_CODEC = ("utf-8", "surrogateescape")


class Facts(NamedTuple):
    """A group member's file facts, as the HTML report reads them from the index."""

    width: int
    height: int
    size: int
    mtime_ns: int
    digest: str  # hex


class Files(Mapping[str, Facts]):
    """Every indexed path (iteration, length) and the facts of those the report needs."""

    def __init__(self, paths: list[str], facts: dict[str, Facts]) -> None:
        self.paths, self._facts = paths, facts
        self._count = len(paths)  # (the paths are dropped once duplicates.json is written)

    def __getitem__(self, path: str) -> Facts:
        return self._facts[path]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)


class ChildSnapshot:
    """What :func:`dedupd.reports.files.duplicates_json` and the HTML report read, rebuilt in the child."""

    def __init__(self, files: Files, dups: dict[str, list[str]]) -> None:
        self.files, self._dups = files, dups
        self.lock = threading.RLock()  # nothing to guard

    @property
    def paths(self) -> list[str]:
        return self.files.paths

    def duplicates_of(self, path: str) -> list[tuple[str, None]]:
        return [(q, None) for q in self._dups.get(path, ())]

    def drop_paths(self) -> None:
        """Free every path and duplicate list (``duplicates.json`` is written; the page needs the
        members' facts and the count only): ~150 MB of strings at a million files."""
        self.files.paths = []
        self._dups = {}





def child_min_files(env: Mapping[str, str] = os.environ) -> int:
    """:data:`CHILD_MIN_FILES`, or the count set by :data:`CHILD_MIN_FILES_ENV`."""
    text = env.get(CHILD_MIN_FILES_ENV, "").strip()
    if not text:
        return CHILD_MIN_FILES
    try:
        value = int(text)
        if value < 0:
            raise ValueError(text)
    except ValueError:
        raise DedupdError(f"{CHILD_MIN_FILES_ENV}={text!r} is not a number of files; set a whole number such as "
                          f"{CHILD_MIN_FILES} (0: always write duplicates.json and report.html in a child) "
                          "or unset it") from None
    return value


def _frame(data: bytes) -> bytes:
    return FRAME_HEAD.pack(len(data)) + data


def job_frames(snapshot: Any, lines: list[bytes], entries: Iterable[Any], config: Any) -> Iterator[bytes]:
    """The frames of one job (see the module docstring) from a :class:`~dedupd.daemon.index.GraphSnapshot`."""
    keep = [[r.kind, r.pattern] for r in config.keep]
    manifest = []
    for e in entries:
        get = e.get if isinstance(e, dict) else (lambda k, e=e: getattr(e, k, None))
        digest = get("digest")
        manifest.append({k: get(k) for k in ("origin", "dest", "keeper", "state", "reason", "updated_at")}
                        | {"digest": digest.hex() if isinstance(digest, bytes) else digest})
    yield _frame(json.dumps({"keep": keep, "max_pixels": config.max_pixels, "report_mode": config.report_mode,
                             "dry_run": bool(getattr(config, "dry_run", False)), "entries": manifest}).encode())
    paths = snapshot.paths
    for k in range(0, len(paths), PATHS_STEP):
        yield _frame("\0".join(paths[k:k + PATHS_STEP]).encode(*PATH_CODEC))
    yield _frame(b"")
    dups = snapshot.duplicate_lists()
    members = keys_of(dups)  # (in slices: one list() of ~190k keys was seen holding the GIL 44 ms)
    for k in range(0, len(members), MEMBERS_STEP):
        part = {p: [q for q, _ in dups[p]] for p in members[k:k + MEMBERS_STEP]}
        yield _frame(json.dumps(part).encode())
    yield _frame(b"")
    wanted = members + [m["keeper"] for m in manifest if m["keeper"] and m["keeper"] not in dups]
    for k in range(0, len(wanted), MEMBERS_STEP):
        facts = {}
        for p in wanted[k:k + MEMBERS_STEP]:
            info = snapshot.files.get(p)
            if info is not None:
                facts[p] = [info.width, info.height, info.size, info.mtime_ns, info.digest.hex()]
        yield _frame(json.dumps(facts).encode())
    yield _frame(b"")
    for k in range(0, len(lines), MEMBERS_STEP):
        yield _frame(b"\n".join(lines[k:k + MEMBERS_STEP]))
    yield _frame(b"")


class ChildFailed(RuntimeError):
    """The report child did not write both reports. ``redo_here``: it failed by itself (an import,
    an error), so the daemon may write them itself; not when it was killed (the daemon's stop, the
    OOM killer: the daemon would only take its memory) or never started because the daemon stops."""

    def __init__(self, message: str, redo_here: bool = False) -> None:
        super().__init__(message)
        self.redo_here = redo_here


class ReportChild:
    """Runs one job at a time in a child process; :meth:`kill` ends a running one (daemon stop)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.cpu_seconds = 0.0  # the last child's CPU time (user + system)
        self.peak_rss_mb = 0.0  # and its peak resident memory (as it reported it)

    def run(self, report_dir: str, frames: Iterable[bytes], pause: Callable[[], None] = lambda: None
            ) -> list[tuple[str, str]]:
        """Write ``duplicates.json`` and ``report.html`` in ``report_dir`` from ``frames``; returns
        the ``(path, digest hex)`` whose thumbnails are not made yet. ``pause`` runs between frames."""
        for stale in glob.glob(os.path.join(glob.escape(report_dir), TMP_PREFIX + "*")):
            try:  # left by a child killed mid-write (one job runs at a time)
                os.unlink(stale)
            except OSError:
                pass
        home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the same dedupd
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (home, os.environ.get("PYTHONPATH"))))}
        with self._lock:
            if self._stopped:
                raise ChildFailed("the daemon is stopping")
            proc = self._proc = subprocess.Popen(
                [sys.executable, "-m", "dedupd.reports.report_child", report_dir], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()),  # type: ignore[union-attr]
                                  name="dedupd-report-child-err", daemon=True)
        reader.start()
        try:
            try:
                for frame in frames:
                    proc.stdin.write(frame)
                    pause()
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child died: its status says why
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)  # (its CPU time: what the write cost the machine)
            code = proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_seconds = usage.ru_utime + usage.ru_stime
        finally:
            with self._lock:
                self._proc = None
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(5)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    pipe.close()
                except OSError:
                    pass
        if code != 0:
            tail = b"".join(err).decode(errors="replace").strip().splitlines()[-3:]
            why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise ChildFailed(f"the report child ({sys.executable} -m dedupd.reports.report_child) failed: {why}"
                              + (f": {' | '.join(tail)}" if tail else ""), redo_here=code > 0)
        answer = json.loads(out)
        self.peak_rss_mb = answer.get("peak_rss_kb", 0) / 1024
        return [(p, hx) for p, hx in answer["missing"]]

    @property
    def pid(self) -> int | None:
        """The running child's pid, if one runs."""
        proc = self._proc
        return None if proc is None else proc.pid

    def kill(self, *, refuse: bool = False) -> None:
        """Kill the running child (the previous reports stay); ``refuse``: and every later job."""
        with self._lock:
            self._stopped = self._stopped or refuse
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

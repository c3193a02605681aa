"""Report files: ``duplicates.json``, ``groups.json`` (atomic rewrites) and ``events.jsonl`` (append).

``duplicates.json`` is imagededup's ``find_duplicates`` format with absolute paths: every readable
indexed image is a key, lists are symmetric. ``groups.json`` lists each duplicate group with the
copy the keep-rule keeps and how every other member matched it.

All three are written from a :class:`~dedupd.daemon.index.GraphSnapshot` (taken under the index lock
in O(files + duplicate edges)); the writing itself runs without the lock, and ``duplicates.json``
is streamed (a million keys without building the dict or the whole text first).
"""

from __future__ import annotations

import bisect
import gc
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from dedupd.core.groups import sorted_in_steps
from dedupd.core.policy import GroupDecision
from dedupd.core.review import Review
from dedupd.daemon.config import DEFAULT_REPORT_MODE, Config
from dedupd.daemon.gcpause import gc_paused
from dedupd.daemon.index import GraphSnapshot, MatchIndex
from dedupd.daemon.slices import drop_in_steps
from dedupd.reports.atomic import file_mode, write_atomic
from dedupd.reports.groups import build_groups, decide, encode_group, would_quarantine
from dedupd.reports.html import THUMBS_DIR
from dedupd.reports.offline import CHILD_MIN_FILES, ChildFailed, ReportChild, job_frames
from dedupd.reports.seal import code_digest, config_digest, file_identity, read_seal, seal_fields, void_seal, write_seal

logger = logging.getLogger(__name__)


def write_json_atomic(path: str, data: Any, mode: int = DEFAULT_REPORT_MODE) -> None:
    """Write ``data`` as JSON to ``path`` at once (temp file, fsync, rename), as ``mode`` less the umask."""
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode(), mode)


class EventLog:
    """Append-only ``events.jsonl``: one JSON object per line (found, quarantined, restored, ...).

    A failed append (full disk, report folder gone) never fails the caller's work: it is logged once
    per run of failures and counted in :attr:`dropped`; appends resume when writing works again.
    """

    def __init__(self, path: str, mode: int = DEFAULT_REPORT_MODE) -> None:
        self.path = path
        self.mode = file_mode(mode)
        if os.path.exists(path):  # written under another report_mode before
            os.chmod(path, self.mode)
        self.dropped = 0
        self.failing: str | None = None  # the error while appends fail
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def append(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=str)
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
                with os.fdopen(fd, "a") as f:
                    f.write(line + "\n")
            except OSError as exc:
                self.dropped += 1
                if self.failing is None:
                    logger.error("cannot append to %s: %s; events are dropped until it works again",
                                 self.path, exc, extra={"path": self.path})
                self.failing = f"cannot append to {self.path}: {exc}"
                return
            if self.failing is not None:
                logger.warning("appending to %s works again after %d dropped events", self.path, self.dropped)
                self.failing = None


#: ``duplicates.json`` and ``report.html`` wait this many times their last write time before the
#: next (so at most ~1/10 of the time goes to them): at a million files one write takes ~10 s of
#: CPU and ~130 MB of writes, which, three write times apart, delayed a new file's groups.json
#: line by seconds (GIL and fsync contention)
SLOW_SPACING = 9.0
#: writes shorter than this are spaced by :data:`SLOW_SPACING_SHORT` x their time instead: a small
#: library's reports stay a fraction of a second behind its groups.json (a 9x spacing of a 0.15 s
#: write on a busy machine left duplicates.json 1.4 s behind)
SLOW_SHORT_S = 1.0
SLOW_SPACING_SHORT = 3.0
def duplicates_json(snapshot: GraphSnapshot, sort: Callable[[list[str]], list[str]] = sorted_in_steps
                    ) -> Iterator[bytes]:
    """The bytes of ``duplicates.json`` in pieces: exactly ``json.dumps(adjacency, indent=1)`` + newline,
    keys sorted (what :meth:`MatchIndex.adjacency` gives) by ``sort`` (in steps: no long GIL hold;
    the report child, alone in its process, sorts at once)."""
    paths = sort(snapshot.paths)
    if not paths:
        yield b"{}\n"
        return
    enc = encode_basestring_ascii
    piece: list[str] = []
    for k, p in enumerate(paths):
        dups = snapshot.duplicates_of(p)
        sep = "{\n " if k == 0 else ",\n "
        if dups:
            piece.append(f"{sep}{enc(p)}: [\n  " + ",\n  ".join(enc(q) for q, _ in dups) + "\n ]")
        else:
            piece.append(f"{sep}{enc(p)}: []")
        if len(piece) >= 4096:
            yield "".join(piece).encode("ascii")
            piece = []
    piece.append("\n}\n")
    yield "".join(piece).encode("ascii")


def group_line(group: dict[str, Any]) -> str:
    """One group of ``groups.json`` (compact JSON: the C encoder)."""
    return json.dumps(group, separators=(",", ":"))


def store_review(store: Any) -> Review | None:
    """The user's decisions (ignore, keep) recorded in ``store``, if it keeps any."""
    return store.review() if store is not None and hasattr(store, "review") else None


def _head(config: Config, moved: str, freed: int) -> str:
    """The header of ``groups.json`` up to its groups: ``moved`` is the would-quarantine paths,
    JSON-encoded and joined by ``", "`` (what ``json.dumps`` makes of the list)."""
    head = json.dumps({"generated_at": round(time.time(), 3), "policy": config.policy, "match": config.match,
                       "methods": {**config.hash_methods(), **({"cnn": config.cnn.threshold} if config.cnn else {})},
                       "dry_run": config.dry_run})
    return f'{head[:-1]}, "would_quarantine": [{moved}], "would_free_bytes": {freed}, "groups": [\n'


def groups_json(groups: list[dict[str, Any]], config: Config, lines: list[str] | None = None) -> bytes:
    """The bytes of ``groups.json``: a header (with the dry-run preview), then one group per line
    (``lines``: already encoded)."""
    preview = would_quarantine(groups)
    moved = ", ".join(encode_basestring_ascii(p) for p in preview["would_quarantine"])
    body = ",\n".join(lines if lines is not None else map(group_line, groups))
    return (_head(config, moved, preview["would_free_bytes"]) + body + "\n]}\n").encode()


def _header(config: Config, review: Review | None) -> tuple[Any, ...]:
    """What every group depends on besides the index: a change of it redoes them all."""
    return (config.policy, config.match, config.hash_thresholds, config.cnn, config.dry_run, config.roots, review)


class _Kept(NamedTuple):
    """What :class:`ReportWriter` keeps of a group between writes (not the group's dict: its line
    is enough, and the HTML report parses the lines when it is written)."""

    line: bytes  # its groups.json line
    moved: str  # its would-quarantine paths, JSON-encoded, joined by ", "
    freed: int


class ReportWriter:
    """Writes the reports of one index, recomputing only the groups its changes touched.

    ``groups.json`` is rewritten on every :meth:`write` that has changes; ``duplicates.json`` (a
    key per file by its format) and ``report.html`` are O(files) or O(groups) to write, so they
    are written at most every ``max(report_interval_s, SLOW_SPACING x their last write time)``
    (3x for writes under :data:`SLOW_SHORT_S`; the :attr:`slow_due` time; :attr:`slow_pending`
    says one is owed). The groups are kept between
    writes, each as its encoded line, in file order: a change recomputes the groups of the paths
    it touched (their components now, and the groups they were in), not every group, and the
    rewrite joins the kept lines (no re-encoding, no re-sorting).

    At start-up, a ``groups.json`` sealed by the last clean stop (:mod:`dedupd.reports.seal`) that
    matches the store, the config and the code is adopted as the first write (:attr:`adopted`):
    the lines are built at the next :meth:`write_groups` (written only if something changed
    meanwhile), and :meth:`seal` vouches for the file again at the next clean stop.
    """

    def __init__(self, report_dir: str) -> None:
        self.report_dir = report_dir
        self._kept: dict[tuple[str, ...], _Kept] = {}  # by members (sorted)
        # every group in file order, as three parallel lists: a change inserts and deletes its
        # groups' rows (no per-write pass over every group: ~0.15 s a write at 1M, loaded)
        self._order: list[tuple[int, str]] = []  # (-size, first member), sorted
        self._lines: list[bytes] = []  # its groups.json line
        self._moved: list[str] = []  # its would-quarantine paths ("" for none)
        self._freed = 0  # the would-free bytes of every group
        self._member: dict[str, tuple[str, ...]] = {}
        self._keep: Any = None
        self._header: Any = None
        self._duplicates = 0
        self.slow_due = 0.0
        self.slow_pending = False  # owed after each groups.json write that changed it (the first does)
        #: called between pieces of ``duplicates.json``: may wait (the daemon lets a due groups.json
        #: write go first, so that a new file's line is not held up by a million-key write)
        self.yield_to: Callable[[], None] | None = None
        #: the last ``duplicates.json`` + ``report.html`` write's own time (waits in yield_to excluded)
        self.slow_seconds = 0.0
        self._yielded = 0.0
        self._t_duplicates = 0.0  # when the last in-process duplicates.json was written (monotonic)
        #: writes duplicates.json and report.html in a child process (the daemon sets it; see
        #: :mod:`dedupd.reports.offline`); None: in this process
        self.child: ReportChild | None = None
        self.child_min_files = CHILD_MIN_FILES  # ... from this many indexed files
        self.counts = {"groups": 0, "duplicates": 0}
        self._lock = threading.Lock()  # one groups.json write (or seal) at a time
        self.adopted = False  # groups.json on disk adopted from its seal; the lines not built yet
        self._tried_adopt = False
        self._unwritten = False  # the groups changed but their write failed: the next write writes
        self._taken: tuple[bool, set[str]] = (False, set())  # the last refresh's take_touched()
        #: what the file on disk was written (or adopted) for: (config digest, review, identity)
        self._written: tuple[str, Review | None, list[int] | None] | None = None
        code_digest()  # of the code running now (a seal at the stop must not vouch for newer code on disk)

    def _drop(self, key: tuple[str, ...]) -> None:
        for p in key:
            self._member.pop(p, None)
        self._freed -= self._kept.pop(key).freed
        k = bisect.bisect_left(self._order, (-len(key), key[0]))
        del self._order[k], self._lines[k], self._moved[k]
        self._duplicates -= len(key) - 1

    def _put(self, decision: GroupDecision, snapshot: GraphSnapshot, evidence: dict[int, str], *,
             bulk: bool = False) -> None:
        """Keep one decided group (``bulk``: its order entry is appended; the caller sorts)."""
        line, moves = encode_group(decision, snapshot, evidence)
        self._keep_group(decision.members, _Kept(line.encode(), ", ".join(encode_basestring_ascii(p) for p, _ in moves),
                                                 sum(b for _, b in moves)), bulk=bulk)

    def _keep_group(self, key: tuple[str, ...], kept: _Kept, *, bulk: bool) -> None:
        """Keep group ``key`` as ``kept`` (``bulk``: its order entry is appended)."""
        self._kept[key] = kept
        o = (-len(key), key[0])
        k = len(self._order) if bulk else bisect.bisect_left(self._order, o)
        self._order.insert(k, o)
        self._lines.insert(k, kept.line)
        self._moved.insert(k, kept.moved)
        self._freed += kept.freed
        for p in key:
            self._member[p] = key
        self._duplicates += len(key) - 1

    def _refresh(self, index: MatchIndex, config: Config, review: Review | None) -> bool:
        """Bring the kept groups up to date with ``index``; False when nothing changed. A change of
        the rule, the roots (reference roots), the dry run or the user's decisions redoes them all."""
        everything, touched = self._taken = index.take_touched()
        header = _header(config, review)
        if header != self._header:
            self._header, everything = header, True
        full = everything or config.keep != self._keep
        if full:
            with index.lock:  # the files of group members only (a snapshot copies every file)
                dups = index.duplicate_lists()
                snapshot = GraphSnapshot({p: index.files[p] for p in dups}, dups, index.generation)
            old = (self._kept, self._order, self._lines, self._moved, self._member)
            self._kept, self._order, self._lines, self._moved, self._member = {}, [], [], [], {}
            self._keep, self._duplicates, self._freed = config.keep, 0, 0
            for part in old:
                drop_in_steps(part)  # (the previous groups: not freed in one C call)
        elif not touched:
            return False
        else:
            with index.lock:
                seeds = set(touched)
                for p in touched:
                    seeds.update(self._member.get(p, ()))
                dups = {}
                stack = list(seeds)
                while stack:
                    p = stack.pop()
                    if p in dups:
                        continue
                    dups[p] = found = index.duplicates_of(p)
                    stack.extend(q for q, _ in found if q not in dups)
                dups = {p: d for p, d in dups.items() if d}
                snapshot = GraphSnapshot({p: index.files[p] for p in dups}, dups, index.generation)
            for key in {self._member[p] for p in seeds if p in self._member}:
                self._drop(key)
        evidence: dict[int, str] = {}
        decisions = decide(snapshot, config.keep, review=review, config=config)
        for decision in decisions:
            self._put(decision, snapshot, evidence, bulk=full)
        if full:  # ~100k groups: one sort held the GIL ~0.1 s
            rows = sorted_in_steps(list(zip(self._order, self._lines, self._moved)))  # (first members differ)
            self._order = [r[0] for r in rows]
            self._lines = [r[1] for r in rows]
            self._moved = [r[2] for r in rows]
            drop_in_steps(rows)
        drop_in_steps(decisions)
        snapshot.drop()
        if full:  # the kept groups live until the next full refresh: frozen before the collector resumes
            gc.freeze()  # (a young collection over ~300k new objects held the GIL 0.1-0.2 s at 1M)
        return True

    def write(self, index: MatchIndex, config: Config, store: Any = None, *, slow: bool | None = None,
              on_thumbnails: Callable[[], None] | None = None, lazy: bool = False) -> dict[str, int]:
        """:meth:`write_groups`, then :meth:`write_slow` (``slow``: True forces it, False skips it,
        None: when due; never while the adopted groups are not built). Returns the counts for status."""
        self.write_groups(index, config, store, lazy=lazy)
        if not self.adopted and (slow or (slow is None and self.slow_due_now())):
            self.write_slow(index, config, store, on_thumbnails=on_thumbnails)
        return self.counts

    def write_groups(self, index: MatchIndex, config: Config, store: Any = None, *, lazy: bool = False
                     ) -> dict[str, int]:
        """Recompute the groups a change touched and rewrite ``groups.json`` if any did.

        The first call adopts a sealed file when it is current (:attr:`adopted`, nothing built);
        a later call builds the adopted groups' lines, unless ``lazy`` and nothing changed since
        (the shutdown's final write: the file is current)."""
        with self._lock, gc_paused():  # no full collection (a GIL stall for the socket) per batch of groups
            if not self._tried_adopt:
                self._tried_adopt = True
                if self._adopt(index, config, store):
                    return self.counts
            if self.adopted and lazy and not self._changed_since_written(index, config, store):
                return self.counts
            return self._write_groups(index, config, store)

    def _adopt(self, index: MatchIndex, config: Config, store: Any) -> bool:
        """Adopt the sealed ``groups.json`` if it is a full write of ``index`` (just loaded from
        ``store`` at its generation, the graph linked) under ``config``. When the index was loaded
        as of an earlier generation with the commits since replayed (:attr:`MatchIndex.replayed_from`)
        and the file shows the store as of that generation or later (its seal, exact or a floor),
        its groups are taken instead and only the replayed paths' groups are recomputed by the
        write that follows (False is returned)."""
        if store is None or not hasattr(store, "generation") or not index.graph_ready:
            return False
        everything, touched = index.take_touched()  # the load (a commit since changes the generation)
        review = store_review(store)
        path = os.path.join(self.report_dir, "groups.json")
        seal = read_seal(self.report_dir, store.path, config, file_identity(path), review)
        if seal is None or not seal["exact"] or seal["txnid"] != store.generation():
            if (seal is not None and not everything and index.replayed_from is not None
                    and seal["txnid"] >= index.replayed_from):
                self._adopt_lines(index, config, review, seal, touched)
            return False  # built in full (no header yet) unless its lines were taken, so the drain hides no change
        self.adopted, self.counts = True, {k: seal[k] for k in ("groups", "duplicates")}
        self._written = (config_digest(config), review, seal["file"])
        logger.info("groups.json sealed at the last stop is current: adopted as the first write", extra=self.counts)
        return True

    def _adopt_lines(self, index: MatchIndex, config: Config, review: Review | None, seal: dict[str, Any],
                     touched: set[str]) -> None:
        """Take the groups of ``groups.json`` (vouched for by ``seal``) as the kept groups, and give
        the replayed paths (``touched``) back to ``index``; nothing is taken when a line does not
        parse or the file changed meanwhile (the write then builds in full)."""
        t0 = time.monotonic()
        path = os.path.join(self.report_dir, "groups.json")
        try:
            with open(path, "rb") as f:
                kept = _parse_lines(f.read())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("groups.json cannot be taken after the crash (%s): built in full", exc,
                           extra={"path": path})
            return
        if file_identity(path) != seal["file"]:
            return  # (replaced while it was read)
        for key, item in kept:  # (in file order: appended)
            self._keep_group(key, item, bulk=True)
        self._header = _header(config, review)
        self._keep = config.keep
        self._written = (config_digest(config), review, seal["file"])  # (the next write's floor: the seal's)
        index.touch_paths(touched)
        gc.freeze()  # (as after a full build: the kept groups live on)
        logger.info("groups.json of before the crash taken: the replayed files' groups are recomputed",
                    extra={"groups": len(kept), "replayed": len(touched), "seconds": round(time.monotonic() - t0, 2)})

    def _changed_since_written(self, index: MatchIndex, config: Config, store: Any) -> bool:
        """Whether the groups may differ from the file last written or adopted."""
        return (self._written is None or self._unwritten or index.has_touched()
                or self._written[:2] != (config_digest(config), store_review(store))
                or self._written[2] != file_identity(os.path.join(self.report_dir, "groups.json")))

    def seal(self, index: MatchIndex, config: Config, store: Any, window: Any = None) -> bool:
        """At a clean stop (pipeline and socket stopped: ``store`` commits nothing more): vouch for
        ``groups.json`` when it is the full write of ``index`` under ``config`` (see
        :mod:`dedupd.reports.seal`). Returns whether the seal was written. While the daemon runs
        (the idle seal), ``window`` (:class:`dedupd.daemon.snapshot.Window`, opened before) gives
        the txnid, and nothing is written unless it still holds after the checks."""
        if not self._lock.acquire(blocking=False):  # a write still running (an abandoned final write)
            return False
        try:
            if not index.graph_ready or self._changed_since_written(index, config, store):
                return False
            if window is not None and not window.holds():
                return False
            assert self._written is not None and self._written[2] is not None
            txnid = store.generation() if window is None else window.txnid
            write_seal(self.report_dir, seal_fields(store.path, txnid, config, self._written[2],
                                                    self.counts, self._written[1]), config.report_mode)
            return True
        finally:
            self._lock.release()

    def _write_groups(self, index: MatchIndex, config: Config, store: Any) -> dict[str, int]:
        review = store_review(store)
        adopted, self.adopted = self.adopted, False
        t0 = time.monotonic()
        changed = self._refresh(index, config, review)
        timings = {"refresh": time.monotonic() - t0}
        if adopted:  # the lines of the adopted file are built: written only if the groups changed since
            changed = any(self._taken) or self._changed_since_written(index, config, store)
            self.slow_pending = True  # duplicates.json and report.html are written as after any first write
        self.counts = {"groups": len(self._kept), "duplicates": self._duplicates}
        if changed or self._unwritten:
            t1 = time.monotonic()
            head = _head(config, ", ".join(filter(None, self._moved)), self._freed)
            timings["order"] = time.monotonic() - t1
            path = os.path.join(self.report_dir, "groups.json")
            floor = self._floor(config, store)
            self._unwritten, self._written = True, None
            void_seal(self.report_dir)
            write_atomic(path, _pieces(head.encode(), self._lines), config.report_mode, timings=timings)
            self._unwritten = False
            logger.debug("groups.json written", extra={k: round(v, 4) for k, v in timings.items()})
            self._written = (config_digest(config), review, file_identity(path))
            self.slow_pending = True
            if floor is not None and self._written[2] is not None:
                write_seal(self.report_dir, seal_fields(store.path, floor, config, self._written[2], self.counts,
                                                        review, exact=False), config.report_mode)
        return self.counts

    def _floor(self, config: Config, store: Any) -> int | None:
        """The txnid of the seal (exact or floor) of the file this write replaces: the new file
        shows the store as of it or later (see :mod:`dedupd.reports.seal`); None: no such seal."""
        if store is None or not hasattr(store, "path") or self._written is None or self._unwritten:
            return None
        seal = read_seal(self.report_dir, store.path, config, self._written[2], any_review=True)
        return None if seal is None else int(seal["txnid"])

    def groups(self, pause: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        """The groups of the last :meth:`write_groups`, in file order (parsed from their lines;
        ``pause`` is called every thousand groups)."""
        with self._lock:  # not while a write changes them
            lines = list(self._lines)
        out: list[dict[str, Any]] = []
        for k in range(0, len(lines), 1024):
            out.extend(map(json.loads, lines[k:k + 1024]))
            if pause is not None:
                pause()
        return out

    def slow_due_now(self) -> bool:
        """True when ``duplicates.json`` and ``report.html`` are owed and their time has come."""
        return self.slow_pending and time.monotonic() >= self.slow_due

    def write_slow(self, index: MatchIndex, config: Config, store: Any = None, *,
                   on_thumbnails: Callable[[], None] | None = None) -> None:
        """Rewrite ``duplicates.json`` and ``report.html`` (with the groups of the last :meth:`write_groups`):
        by :attr:`child` when the daemon set one, the index has :attr:`child_min_files` files or more
        and thumbnails are made in the background, else here."""
        from dedupd.reports.thumbnails import ensure_thumbnails

        t0 = time.monotonic()
        self.slow_pending = False
        self._yielded = 0.0
        child = self.child is not None and on_thumbnails is not None and len(index.files) >= self.child_min_files
        if child:
            assert self.child is not None and on_thumbnails is not None
            cpu = time.thread_time()
            try:
                with gc_paused():
                    snapshot = index.snapshot()
                    try:
                        with self._lock:  # the groups of the last write_groups, not while a write changes them
                            lines = list(self._lines)
                        entries = list(store.iter_quarantine()) if store is not None else []
                        missing = self.child.run(self.report_dir, job_frames(snapshot, lines, entries, config),
                                                 self._pause)
                    finally:
                        snapshot.drop()
            except ChildFailed as exc:
                if not exc.redo_here:
                    raise
                logger.warning("%s; duplicates.json and report.html are written in the daemon this time", exc,
                               extra={"dir": self.report_dir})
                child = False
        if child:
            assert self.child is not None and on_thumbnails is not None
            if missing:  # made by the worker processes, in the background (as in process)
                ensure_thumbnails(missing, os.path.join(self.report_dir, THUMBS_DIR), max_pixels=config.max_pixels,
                                  mode=config.report_mode, on_made=on_thumbnails)
            # what the write cost: this thread's CPU and the child's (not the wall time: on a loaded
            # machine a child waits seconds for a CPU, which would space a small library's reports apart)
            self.slow_seconds = time.thread_time() - cpu + self.child.cpu_seconds
            times = {"wall_s": time.monotonic() - t0, "child_cpu_s": self.child.cpu_seconds,
                     "child_peak_rss_mb": self.child.peak_rss_mb}
        else:
            t0, self._yielded = time.monotonic(), 0.0
            self._write_slow_here(index, config, store, on_thumbnails)
            self.slow_seconds = time.monotonic() - t0 - self._yielded
            times = {"duplicates_s": self._t_duplicates - t0, "html_s": time.monotonic() - self._t_duplicates}
        logger.debug("duplicates.json and report.html written", extra={
            "child": child, "yielded_s": round(self._yielded, 3), **{k: round(v, 3) for k, v in times.items()}})
        spacing = SLOW_SPACING_SHORT if self.slow_seconds < SLOW_SHORT_S else SLOW_SPACING
        self.slow_due = time.monotonic() + max(config.report_interval_s, spacing * self.slow_seconds)

    def _write_slow_here(self, index: MatchIndex, config: Config, store: Any,
                         on_thumbnails: Callable[[], None] | None) -> None:
        """:meth:`write_slow` in this process."""
        from dedupd.reports.html import write_html_report

        with gc_paused():
            snapshot = index.snapshot()
            write_atomic(os.path.join(self.report_dir, "duplicates.json"), self._yielding(duplicates_json(snapshot)),
                         config.report_mode)
            self._t_duplicates = time.monotonic()
            groups = self.groups(pause=self._pause)
            write_html_report(os.path.join(self.report_dir, "report.html"), snapshot, config, store,
                              groups=groups, on_thumbnails=on_thumbnails, pause=self._pause)
            drop_in_steps(groups)  # not freed at once on return (0.1 s and more of held GIL at 1M)
            snapshot.drop()

    def _pause(self) -> None:
        """Let a due groups.json write go first (:attr:`yield_to`); the wait is not write time."""
        if self.yield_to is not None:
            t0 = time.monotonic()
            self.yield_to()
            self._yielded += time.monotonic() - t0

    def _yielding(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self._pause()
            yield piece


def _parse_lines(data: bytes) -> list[tuple[tuple[str, ...], _Kept]]:
    """The groups of a ``groups.json`` this writer wrote (:func:`_pieces`), as :class:`ReportWriter`
    keeps them, in file order; ValueError (or KeyError, TypeError) when it is not such a file."""
    head, sep, rest = data.partition(b"\n")
    if not sep or not head.endswith(b'"groups": [') or not rest.endswith(b"\n]}\n"):
        raise ValueError("not a groups.json of this version")
    body = rest[: -len(b"\n]}\n")]
    out = []
    for line in body.split(b",\n") if body else []:  # (JSON strings escape newlines: none inside a line)
        group = json.loads(line)
        members = tuple(sorted([group["keep"]["path"], *(d["path"] for d in group["duplicates"])]))
        if len(members) != group["size"]:
            raise ValueError("a group's size does not match its members")
        moves = [d for d in group["duplicates"] if d["move"]]
        out.append((members, _Kept(line, ", ".join(encode_basestring_ascii(d["path"]) for d in moves),
                                   sum(int(d.get("bytes", 0)) for d in moves))))
    if [(-len(k), k[0]) for k, _ in out] != sorted((-len(k), k[0]) for k, _ in out):
        raise ValueError("groups out of order")
    return out


def _pieces(head: bytes, lines: list[bytes]) -> Iterator[bytes]:
    """``groups.json`` from its header and group lines, in pieces of about a thousand lines."""
    yield head
    step = 1024
    for k in range(0, len(lines), step):
        yield (b",\n" if k else b"") + b",\n".join(lines[k:k + step])
    yield b"\n]}\n"


def write_reports(report_dir: str, index: MatchIndex | GraphSnapshot, config: Config, store: Any = None, *,
                  on_thumbnails: Callable[[], None] | None = None) -> dict[str, int]:
    """Rewrite ``duplicates.json``, ``groups.json`` and ``report.html`` in full; returns counts for status.

    With ``on_thumbnails`` the HTML report does not wait for thumbnails not made yet: worker
    processes make them in the background and ``on_thumbnails`` is called when some are ready
    (the daemon then writes the report again); without it, they are made first (``dedupd scan``).
    """
    from dedupd.reports.html import write_html_report

    snapshot = index.snapshot() if isinstance(index, MatchIndex) else index
    groups = build_groups(snapshot, config.keep, store_review(store), config)  # type: ignore[arg-type]
    write_html_report(os.path.join(report_dir, "report.html"), snapshot, config, store,
                      groups=groups, on_thumbnails=on_thumbnails)
    write_atomic(os.path.join(report_dir, "duplicates.json"), duplicates_json(snapshot), config.report_mode)
    void_seal(report_dir)  # a daemon's seal vouches for its own last write only
    write_atomic(os.path.join(report_dir, "groups.json"), groups_json(groups, config), config.report_mode)
    return {"groups": len(groups), "duplicates": sum(g["size"] - 1 for g in groups)}

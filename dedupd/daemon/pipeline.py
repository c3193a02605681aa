"""The pipeline: file events → stat → digest → (reuse | decode in a worker) → store → index.

One consumer thread applies every change, so the store is written in order and each batch of
files is one LMDB transaction. The index is updated only after the commit: a crash in between
loses nothing (the index is rebuilt from the store at start-up).

The thread never dies of a failing step: a step that raises is logged with its traceback and shown
as :attr:`Pipeline.fault` (``dedupd status`` says ``degraded``). A full disk or an I/O error is
retried with backoff until it goes through (free the space and the queue drains); any other
failure is retried once, then a batch is retried file by file and a file that still fails is
logged, counted and left for the next reconcile. :attr:`Pipeline.heartbeat` lets the daemon see a
stall (and stop feeding systemd's watchdog).
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import itertools
import logging
import os
import queue
import stat as stat_mod
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dedupd.cpus import guided_chunks
from dedupd.daemon.config import Config, RootConfig
from dedupd.daemon.encoder import (
    EncodeResult,
    EncodeSpec,
    encode_many,
    exit_with_parent,
    file_digest,
    warm_up,
)
from dedupd.daemon.forkserver import worker_context
from dedupd.daemon.index import FileInfo, MatchIndex
from dedupd.daemon.links import Links
from dedupd.daemon.store import EncodingRecord, FileRecord, Store
from dedupd.daemon.walk import is_watched_file, not_a_file_reason, root_of, walk_root
from dedupd.daemon.workers import kill_executor
from dedupd.errors import StoreWriteError
from dedupd.imaging import refused_at, too_large_reason

if TYPE_CHECKING:
    from dedupd.daemon.policy import QuarantinePlan, RestoreRequest

logger = logging.getLogger(__name__)

#: at most this many queued upserts form one batch: one store transaction (an fsync, 5-10 ms on a busy
#: disk: at 32 files per batch, 20,000 tiny files spent ~4 s committing) and one round of decode tasks;
#: a trickle of files makes small batches, so this bounds only bursts and walks
BATCH = 128
#: at most this many files per decode task for hashes (a CNN task is one batch of 8): one task per
#: file cost a pickled round trip each (~1 ms), more than a 640 px decode; the batch is split into
#: shrinking tasks (:func:`dedupd.cpus.guided_chunks`) so that the workers finish together
HASH_UNIT_MAX = 16
CNN_UNIT = 8
#: one decode unit (a file, or a CNN batch of 8) taking longer is a hung decoder: its workers are
#: killed and its files recorded unreadable (a 100 Mpx decode with every method takes seconds)
DECODE_UNIT_TIMEOUT_S = 120.0
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0
_IDEMPOTENT = frozenset({"delete", "delete_dir", "move", "move_dir", "scan_dir", "forget_missing", "reconfigure"})
#: errnos that say "the machine, not this file": the same step may succeed once they clear
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE,
                              errno.ENFILE})


def is_transient(exc: BaseException) -> bool:
    """True for failures caused by the machine (full disk, I/O error), not by the work itself."""
    if isinstance(exc, StoreWriteError):
        return exc.transient
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


@dataclass
class Fault:
    """The pipeline's current trouble, for ``dedupd status``: what failed, why, since when, how often."""

    step: str
    error: str
    since: float
    attempts: int
    transient: bool

    def as_dict(self) -> dict[str, object]:
        return {"step": self.step, "error": self.error, "since": round(self.since, 3), "attempts": self.attempts,
                "retrying": self.transient}


@dataclass
class Counters:
    """What ``dedupd status`` shows; plain ints updated by the pipeline thread."""

    started_at: float = field(default_factory=time.time)
    decoded: int = 0  # files decoded since start
    reused: int = 0  # files whose digest was already encoded (copies, renames)
    unreadable: int = 0  # unreadable files recorded since start
    processed: int = 0
    failed: int = 0  # work items given up after retries (logged; the next reconcile tries again)
    quarantined: int = 0
    restored: int = 0


@dataclass(frozen=True)
class Work:
    """One item of the pipeline's queue: plain data (no callables cross threads)."""

    #: upsert | delete | delete_dir | move | move_dir | scan_dir | forget_missing | reconfigure | quarantine | restore
    kind: str
    path: str = ""
    dest: str = ""
    paths: tuple[str, ...] = ()  # forget_missing: paths a walk did not see
    config: Config | None = None  # reconfigure: the reloaded config
    plan: QuarantinePlan | RestoreRequest | None = None  # quarantine | restore: for Pipeline.policy


@dataclass
class _Decoding:
    """Decode units submitted to the pool: ``(digests, future)`` each."""

    pool: cf.ProcessPoolExecutor | None
    futures: list[tuple[list[bytes], cf.Future]]


@dataclass
class _Prepared:
    """A batch of upserts stat'ed and digested (:meth:`Pipeline._prepare`), its decodes maybe in flight."""

    order: list[str]
    hash_params: str
    cnn_id: str | None
    records: list[tuple[str, FileRecord, EncodingRecord | None]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    jobs: dict[bytes, list[tuple[str, os.stat_result]]] = field(default_factory=dict)
    known: dict[bytes, EncodingRecord] = field(default_factory=dict)
    #: contents the batch before this one is decoding: in the store once that batch is written
    waiting: dict[bytes, list[tuple[str, os.stat_result]]] = field(default_factory=dict)
    decoding: _Decoding | None = None
    ahead: bool = False  # prepared before the batch in front of it was written
    reused: int = 0  # files recorded with a stored encoding (counted once the batch is written)

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self.order)


class PolicyRunner(Protocol):
    """Carries out ``quarantine`` and ``restore`` work (:class:`dedupd.daemon.policy.QuarantinePolicy`)."""

    def run(self, work: QuarantinePlan | RestoreRequest) -> None: ...


def recheck_for_pixel_limit(rec: FileRecord, info: FileInfo | None, max_pixels: int) -> bool:
    """True when an unchanged file must be looked at again because ``max_pixels`` changed: it was
    refused under a lower limit, or it is indexed but above the current one."""
    if rec.state != "ok":
        limit = refused_at(rec.error)
        return limit is not None and limit < max_pixels
    return info is not None and info.width * info.height > max_pixels


#: unreadable-record reasons that lie in the file's name or mode, not its bytes (the ``_prepare`` texts)
_NAME_NOT_UTF8 = "file name is not valid UTF-8: rename the file (or its folder) to a UTF-8 name"
_NOT_PERMITTED = "permission denied: make the file readable by the user running dedupd"


def unreadable_cause_gone(path: str, rec: FileRecord) -> bool:
    """True when ``rec`` says ``path`` is unreadable for a cause a rename or a ``chmod`` removes,
    and that cause is gone (neither changes the size or mtime the record is compared by)."""
    if rec.state == "ok":
        return False
    if rec.error == _NAME_NOT_UTF8:
        return is_utf8(path)
    if rec.error == _NOT_PERMITTED:
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC))
        except OSError:
            return False
        return True
    return False


def encode_spec(config: Config) -> EncodeSpec:
    cnn = config.cnn
    return EncodeSpec(
        methods=config.hash_keys(),
        fast=config.decode == "fast",
        exif_transpose=config.exif_transpose,
        cnn_model=cnn.model if cnn else None,
        cnn_weights=cnn.weights if cnn else None,
        max_pixels=config.max_pixels,
    )


class Pipeline:
    """Owns the work queue, the decode pool and every store/index write for files."""

    def __init__(
        self,
        config: Config,
        store: Store,
        index: MatchIndex,
        *,
        on_change: Callable[[], None],
        on_event: Callable[..., None],
        retouch: Callable[[str], None],
    ) -> None:
        self.config = config
        self.store = store
        self.index = index
        self.links = Links()
        self.counters = Counters()
        self.queue: queue.Queue[Work] = queue.Queue(maxsize=20000)
        self._on_change = on_change
        self._event = on_event
        self._retouch = retouch
        self._stop = threading.Event()
        self._busy = threading.Event()
        self._pool: cf.ProcessPoolExecutor | None = None
        self.spec = encode_spec(config)
        self.fault: Fault | None = None
        self.encode_fn = encode_many  # what a decode worker runs (a module-level function)
        self.unit_timeout_s = DECODE_UNIT_TIMEOUT_S
        self.heartbeat = time.monotonic()  # the loop's last sign of life (see Daemon.healthy)
        self.policy: PolicyRunner | None = None  # set by the daemon when it owns a quarantine policy
        #: called with the reloaded config on this thread, between batches (the graph's reach)
        self.on_reconfigure: Callable[[Config], None] | None = None

    # -- producer side (any thread) -----------------------------------------------------------

    def put(self, work: Work) -> None:
        """Queue work; blocks while the queue is full (backpressure), gives up when stopping."""
        while not self._stop.is_set():
            try:
                self.queue.put(work, timeout=0.2)
                return
            except queue.Full:
                continue

    def pending(self) -> int:
        return self.queue.qsize() + (1 if self._busy.is_set() else 0)

    def reconfigure(self, config: Config) -> None:
        """Adopt a reloaded config (runs on the pipeline thread, queued as ``reconfigure`` work)."""
        self.config = config
        if self.on_reconfigure is not None:
            self.on_reconfigure(config)
        spec = encode_spec(config)
        if spec != self.spec:
            self.spec = spec
            self._shutdown_pool()

    # -- consumer ------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                self.heartbeat = time.monotonic()
                try:
                    first = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._busy.set()
                try:
                    self._handle(first)
                finally:
                    self._busy.clear()
        finally:
            self._shutdown_pool()

    def _handle(self, first: Work) -> None:
        if first.kind != "upsert":
            self._step(first)
            return
        # Upserts overlap: while the workers decode one batch, this thread stats and digests the
        # next one (and submits its decodes), then writes the first; neither side waits for the other.
        pending: _Prepared | None = None  # a batch whose decodes are in flight, not yet written
        work: Work | None = first
        while work is not None and work.kind == "upsert":
            batch, work = self._gather(work.path)
            if pending is not None and not pending.paths.isdisjoint(batch):
                self._step_upsert(pending.order, pending)  # the same file twice: in order
                pending = None
            ahead = self._prepare_ahead(batch, pending)
            if pending is not None:
                self._step_upsert(pending.order, pending)
            if ahead is None:  # could not be prepared ahead: the usual way (with its retries)
                self._step_upsert(batch)
            pending = ahead
            if work is None and pending is not None and not self._stop.is_set():
                try:
                    work = self.queue.get_nowait()
                except queue.Empty:
                    break
        if pending is not None:
            self._step_upsert(pending.order, pending)
        if work is not None:
            self._step(work)

    def _gather(self, first: str) -> tuple[list[str], Work | None]:
        """A batch of queued upserts starting with ``first`` (at most :data:`BATCH`), and the work
        that ended it (not an upsert), if any."""
        batch = [first]
        while len(batch) < BATCH:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt.kind != "upsert":
                return batch, nxt
            batch.append(nxt.path)
        return batch, None

    def _prepare_ahead(self, paths: list[str], pending: _Prepared | None) -> _Prepared | None:
        """Stat and digest ``paths`` and submit their decodes now; None when that fails (the batch
        then goes the usual way, whose error handling logs and retries)."""
        try:
            return self._prepare(paths, inflight=pending.jobs if pending is not None else {}, submit=True)
        except Exception:  # noqa: BLE001 - redone in order by _step_upsert, which reports a failure
            logger.debug("could not prepare a batch of %d file(s) ahead; done in order", len(paths), exc_info=True)
            return None

    def _step_upsert(self, paths: list[str], prepared: _Prepared | None = None) -> None:
        """Upsert a batch (``prepared``: already stat'ed, its decodes submitted); if it keeps failing
        (not for lack of space), file by file."""
        ready = [prepared]

        def once() -> None:
            ahead, ready[0] = ready[0], None  # a retry prepares afresh
            self._finish(ahead if ahead is not None else self._prepare(paths))

        if self._attempt(f"upsert of {len(paths)} file(s)", once) or len(paths) == 1:
            return
        for path in paths:
            if self._stop.is_set():
                return
            self._attempt(f"upsert {path}", lambda p=path: self._upsert([p]))  # type: ignore[misc]

    def _step(self, work: Work) -> None:
        what = f"{work.kind} {work.path}" + (f" -> {work.dest}" if work.dest else "")
        # a quarantine plan or a restore is not idempotent (it may have moved files before it
        # failed): never re-run it; the next plan redoes what is still due
        self._attempt(what, lambda: self._apply(work), retry=work.kind in _IDEMPOTENT)

    def _attempt(self, what: str, step: Callable[[], None], *, retry: bool = True) -> bool:
        """Run one step of work: True when it went through.

        A transient failure (disk full, I/O) is retried with backoff for as long as it lasts; any
        other failure once (a file may have been mid-change), then it is given up, logged and counted.
        """
        delay, attempts = RETRY_FIRST_S, 0
        while True:
            self.heartbeat = time.monotonic()
            try:
                step()
            except Exception as exc:
                attempts += 1
                transient = is_transient(exc)
                self.fault = Fault(what, f"{type(exc).__name__}: {exc}", self.fault.since if self.fault else time.time(),
                                   attempts, transient)
                if attempts == 1 or transient and attempts % 10 == 0:
                    logger.error("pipeline step failed: %s (%s)", what,
                                 "retrying until it goes through" if transient else "retrying once",
                                 exc_info=True, extra={"step": what, "attempts": attempts})
                if not retry or (not transient and attempts >= 2):
                    self.counters.failed += 1
                    logger.error("giving up on %s after %d attempt(s): %s", what, attempts, exc,
                                 extra={"step": what})
                    return False
                if self._stop.wait(delay):
                    return False  # stopping: left undone, the next start-up reconciles it
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.fault is not None:
                logger.warning("pipeline recovered", extra={"step": what, "after_attempts": attempts + 1})
                self.fault = None
            return True

    def _apply(self, work: Work) -> None:
        if work.kind == "delete":
            self.forget([work.path])
        elif work.kind == "delete_dir":
            # one range of store keys (the folder itself too: a folder with an image's name is
            # recorded as unreadable); the index forgets what the store did
            self._forgotten(self.store.delete_prefix(work.path.rstrip("/") or "/"))
        elif work.kind in ("move", "move_dir"):
            self._move(work.path, work.dest, is_dir=work.kind == "move_dir")
        elif work.kind == "scan_dir":
            self.scan_dir(work.path)
        elif work.kind == "forget_missing":
            # re-checked here: a file may have arrived (via the watcher) after the walk passed its
            # folder; only what is really gone or no longer wanted is forgotten
            self.forget([p for p in work.paths if not (os.path.isfile(p) and is_watched_file(p, self.config))])
        elif work.kind == "reconfigure" and work.config is not None:
            self.reconfigure(work.config)
        elif work.kind in ("quarantine", "restore") and work.plan is not None and self.policy is not None:
            self.policy.run(work.plan)

    # -- deletes and moves ---------------------------------------------------------------------

    def forget(self, paths: list[str]) -> None:
        """Drop paths from store and index (files deleted or moved out of the roots)."""
        paths = sorted(set(paths))
        if not paths:
            return
        self.links.forget(paths)
        self.store.put_files([], deletes=paths)
        self._forgotten(paths)

    def _forgotten(self, paths: list[str]) -> None:
        """The store forgot ``paths``: so does the index."""
        changed = False
        for p in paths:
            if self.index.remove(p) is not None:
                changed = True
                self._event("removed", path=p)
        if changed:
            self._on_change()

    def _move(self, src: str, dst: str, *, is_dir: bool) -> None:
        """Re-key what the store knows under ``src`` to ``dst`` (no decode), then check ``dst``
        against the disk: the move may have overtaken work still queued for the old names (a file
        that settled but was not yet recorded, an edit just before the rename)."""
        moved = self.store.rename_prefix(src, dst)
        with self.index.lock:
            if is_dir:
                prefix = src.rstrip("/") + "/"
                for p in [p for p in self.index.files if p.startswith(prefix)]:
                    self.index.rename(p, dst.rstrip("/") + "/" + p[len(prefix):])
            elif not self.index.rename(src, dst):
                self.index.remove(dst)  # replaced by a file that is not indexed (e.g. unreadable)
        logger.info("moved", extra={"src": src, "dst": dst, "records": moved})
        self._event("moved", path=dst, src=src, records=moved)
        self._on_change()
        if is_dir:
            self.scan_dir(dst)
        else:
            self._retouch(dst)  # unchanged (the usual case) costs one stat once it settles

    def scan_dir(self, directory: str) -> int:
        """Send every wanted file under ``directory`` that the store does not have as it is on disk
        to the settle stage (a folder that arrived or moved while its files were still queued);
        returns how many."""
        directory = directory.rstrip("/")
        root = root_of(directory + "/x", self.config)
        if root is None or (directory != root.path and self.config.skips_dir(directory)):
            return 0
        sub = RootConfig(directory, root.recursive)
        sent = 0
        for found in walk_root(sub, self.config):
            rec = self.store.get_file(found.path)
            if found.st is not None and rec is not None and rec.same_stat(found.st) and (
                    (rec.state != "ok" and not unreadable_cause_gone(found.path, rec)) or found.path in self.index.files):
                continue
            self._retouch(found.path)
            sent += 1
        return sent

    # -- upserts -------------------------------------------------------------------------------

    def _pool_get(self) -> cf.ProcessPoolExecutor:
        """The decode pool, started on first use (workers also load the CNN model, if any).

        Raises:
            ModelUnavailableError: the configured CNN model cannot be loaded.
        """
        if self._pool is None:
            pool = cf.ProcessPoolExecutor(max_workers=max(1, self.config.workers), mp_context=worker_context(),
                                          initializer=exit_with_parent, initargs=(os.getpid(),))
            try:
                pool.submit(warm_up, self.spec).result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            self._pool = pool
        return self._pool

    def start_pool(self) -> None:
        """Start the workers now (at daemon start-up), so a bad CNN setting fails fast and clearly."""
        self._pool_get()

    def _shutdown_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _unreadable(self, path: str, st: os.stat_result | None, reason: str) -> tuple[str, FileRecord | None]:
        self.counters.unreadable += 1
        logger.warning("unreadable image %s: %s", path, reason, extra={"path": path, "reason": reason})
        self._event("unreadable", path=path, reason=reason)
        if st is None:
            return path, None
        return path, FileRecord.from_stat(st, None, state="unreadable", error=reason)

    def _upsert(self, paths: list[str]) -> None:
        """Bring a batch of paths up to date: one store transaction, then the index."""
        self._finish(self._prepare(paths))

    def _prepare(self, paths: list[str], inflight: dict[bytes, list] | None = None, submit: bool = False) -> _Prepared:
        """Stat, digest and look up each path: what to record, forget, reuse or decode (``submit``:
        the decodes are submitted now). A content in ``inflight`` (being decoded for the batch
        before) waits for that batch's encoding instead of a second decode."""
        prep = _Prepared(list(dict.fromkeys(paths)), self.config.hash_params_id(), self.config.cnn_model_id())
        hash_params, cnn_id = prep.hash_params, prep.cnn_id
        records, gone, jobs, known = prep.records, prep.gone, prep.jobs, prep.known
        for path in prep.order:
            try:
                st = os.lstat(path)  # a plain file: one call, as a stat; a symlink: then its target's
                if stat_mod.S_ISLNK(st.st_mode):
                    st = os.stat(path)
                    self.links.note(path)  # its target's changes are its own (see dedupd.daemon.links)
            except OSError as exc:
                dangling = exc.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path)
                if exc.errno in (errno.ENOENT, errno.ENOTDIR) and not dangling:
                    gone.append(path)
                    continue
                # e.g. a symlink loop: record it by its lstat so that it is reported once only
                reason = ("dangling symlink: its target does not exist" if dangling
                          else "symlink loop" if exc.errno == errno.ELOOP else f"cannot stat: {exc.strerror or exc}")
                try:
                    lst: os.stat_result | None = os.lstat(path)
                except OSError:
                    lst = None
                old = self.store.get_file(path)
                if lst is not None and old is not None and old.same_stat(lst) and old.state != "ok":
                    continue
                p, rec = self._unreadable(path, lst, reason)
                if rec is not None:
                    records.append((p, rec, None))
                continue
            old = self.store.get_file(path)
            if not stat_mod.S_ISREG(st.st_mode):
                # a FIFO, a device, a folder named like an image: never opened (a FIFO would block);
                # reported once per (file, reason), even when a folder's mtime changes
                reason = not_a_file_reason(st.st_mode)
                if old is None or old.state == "ok" or old.error != reason or (old.dev, old.inode) != (
                        st.st_dev, st.st_ino):
                    p, rec = self._unreadable(path, st, reason)
                    if rec is not None:
                        records.append((p, rec, None))
                continue
            if old is not None and old.same_stat(st) and not recheck_for_pixel_limit(
                    old, self.index.files.get(path), self.config.max_pixels):
                if (old.state != "ok" and not unreadable_cause_gone(path, old)) or (
                        path in self.index.files and self._fresh(old.digest, hash_params, cnn_id)):
                    continue  # unchanged (and unreadable files are reported once only)
            if not is_utf8(path):
                # reports are UTF-8 JSON: such a name cannot be written faithfully, nor read by most tools
                p, rec = self._unreadable(path, st, _NAME_NOT_UTF8)
                if rec is not None:
                    records.append((p, rec, None))
                continue
            try:
                digest = file_digest(path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    gone.append(path)
                    continue
                reason = _NOT_PERMITTED if exc.errno == errno.EACCES else f"cannot read: {exc.strerror or exc}"
                if exc.errno == errno.ELOOP:
                    reason = "symlink loop"
                p, rec = self._unreadable(path, st, reason)
                if rec is not None and not (old is not None and old.same_stat(st) and old.state != "ok"):
                    records.append((p, rec, None))
                continue
            enc = known.get(digest) or self.store.get_encoding(digest)
            if self._reuse(path, st, digest, enc, prep):
                continue
            if inflight and digest in inflight:
                prep.waiting.setdefault(digest, []).append((path, st))
            else:
                jobs.setdefault(digest, []).append((path, st))
        if submit:
            prep.ahead = True
            prep.decoding = self._submit(jobs) if jobs else None
        return prep

    def _reuse(self, path: str, st: os.stat_result, digest: bytes, enc: EncodingRecord | None,
               prep: _Prepared) -> bool:
        """Record ``path`` with the stored encoding ``enc`` of its content, if it serves: True when
        done (reused, or refused as too large), False when the content must be decoded."""
        if enc is not None and enc.width * enc.height > self.config.max_pixels:
            # encoded under a higher limit (a copy, or max_pixels was lowered): refused as a decode would be
            reason = too_large_reason(None, self.config.max_pixels, (enc.width, enc.height))
            p, rec = self._unreadable(path, st, reason)
            if rec is not None:
                prep.records.append((p, FileRecord(rec.size, rec.mtime_ns, rec.dev, rec.inode, digest,
                                                   "unreadable", rec.error, rec.encoded_at), None))
            return True
        if enc is not None and not any(enc.stale(self.spec.methods, prep.hash_params, prep.cnn_id)):
            prep.known[digest] = enc
            # no encoding written again: the store prunes only at the end of the batch, so a
            # content handed over within the batch (contents swapped by renames) keeps its encoding
            prep.records.append((path, FileRecord.from_stat(st, digest), None))
            prep.reused += 1
            return True
        return False

    def _finish(self, prep: _Prepared) -> None:
        """Collect a prepared batch's decodes, then write it (one store transaction) and index it."""
        if prep.ahead and any(self.store.get_encoding(d) is None for d in prep.known):
            # prepared ahead, and the batch written since then dropped a content this one reuses
            # (its last other path was deleted or changed): look at the batch again
            prep = self._prepare(prep.order)
        late: dict[bytes, list[tuple[str, os.stat_result]]] = {}
        for digest, files in prep.waiting.items():
            enc = self.store.get_encoding(digest)
            for path, st in files:
                if not self._reuse(path, st, digest, enc, prep):  # that decode failed: this one's own
                    late.setdefault(digest, []).append((path, st))
        hash_params, cnn_id = prep.hash_params, prep.cnn_id
        records, gone, known = prep.records, prep.gone, prep.known
        tally = [0, 0]  # decodes, copies that shared one: counted once the batch is written (not per retry)
        new_encodings = self._decode(prep.jobs, hash_params, cnn_id, records, tally, prep.decoding)
        if late:
            new_encodings.update(self._decode(late, hash_params, cnn_id, records, tally))
        # the duplicate-graph edges of contents written now, or new to the index: same transaction
        linking = {rec.digest: enc or new_encodings.get(rec.digest) or known.get(rec.digest)
                   for _, rec, enc in records
                   if rec.state == "ok" and rec.digest is not None and (enc is not None or not self.index.has(rec.digest))}
        planned = self.index.plan({d: (e.hashes, _vector(e)) for d, e in linking.items() if e is not None})
        # each planned digest's edges; a digest not planned gets none here, not even the edges a
        # planned one has to it: re-added after ``gone`` dropped it, a partial list would stand
        # for its whole neighbourhood (edges to contents already indexed lost): the index links it
        edges: dict[bytes, list] = {d: [] for d in linking}
        for edge in planned:
            for end in edge[:2]:
                if end in edges:
                    edges[end].append(edge)
        if records or gone:
            self.store.put_files(records, deletes=gone, edges=planned)
        self.counters.decoded += tally[0]
        self.counters.reused += tally[1] + prep.reused
        for p in gone:
            if self.index.remove(p) is not None:
                self._event("removed", path=p)
        for path, rec, _ in records:
            self.counters.processed += 1
            if rec.state != "ok" or rec.digest is None:
                self.index.remove(path)
                continue
            enc = new_encodings.get(rec.digest) or known.get(rec.digest) or self.store.get_encoding(rec.digest)
            if enc is None:
                continue
            info = FileInfo(rec.digest, rec.size, rec.mtime_ns, enc.width, enc.height)
            self.index.add(path, info, enc.hashes, _vector(enc), edges.get(rec.digest))
            dups = self.index.duplicates_of(path)
            if dups:
                self._event("found", path=path, duplicates=[{"path": q, **ev.as_dict()} for q, ev in dups[:20]])
        if records or gone:
            self._on_change()

    def _encode_alone(self, path: str) -> EncodeResult:
        """Encode one file in a fresh pool; a second crash or a hang marks just this file unreadable."""
        try:
            return self._pool_get().submit(self.encode_fn, [path], self.spec).result(self.unit_timeout_s)[0]
        except BrokenProcessPool:
            self._pool = None
            return EncodeResult(False, reason="the decoder process crashed on this file")
        except cf.TimeoutError:
            return self._hung(path)

    def _hung(self, path: str) -> EncodeResult:
        """A decode ran past the time limit: kill the pool (the next unit starts a new one)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            kill_executor(pool)
        logger.warning("decoder stopped after %.0f s on %s", self.unit_timeout_s, path, extra={"path": path})
        return EncodeResult(False, reason=f"decoding took longer than {self.unit_timeout_s:g} s and was stopped")

    def _fresh(self, digest: bytes | None, hash_params: str, cnn_id: str | None) -> bool:
        enc = self.store.get_encoding(digest) if digest else None
        return enc is not None and not any(enc.stale(self.spec.methods, hash_params, cnn_id))

    def _submit(self, jobs: dict[bytes, list[tuple[str, os.stat_result]]]) -> _Decoding:
        """Submit one decode per new digest to the worker pool, in units (see :data:`HASH_UNIT_MAX`).

        Raises:
            ModelUnavailableError: the configured CNN model cannot be loaded.
        """
        # the largest files first (their size stands for their decode time): the shrinking last
        # units then hold the cheapest files, and no worker is left with a big photo at the end
        digests = sorted(jobs, key=lambda d: jobs[d][0][1].st_size, reverse=True)
        try:
            pool = self._pool_get()
            # small units (a CNN batch, or a few files): a stop waits for the units in flight only
            workers = max(1, self.config.workers)
            if self.spec.cnn_model:  # the model's batches
                chunks = [digests[k:k + CNN_UNIT] for k in range(0, len(digests), CNN_UNIT)]
            else:
                sizes = guided_chunks(len(digests), workers, HASH_UNIT_MAX)
                chunks = [digests[end - size:end] for size, end in zip(sizes, itertools.accumulate(sizes))]
            return _Decoding(pool, [(chunk, pool.submit(self.encode_fn, [jobs[d][0][0] for d in chunk], self.spec))
                                    for chunk in chunks])
        except BrokenProcessPool:
            self._pool = None
            return _Decoding(None, [])

    def _decode(
        self,
        jobs: dict[bytes, list[tuple[str, os.stat_result]]],
        hash_params: str,
        cnn_id: str | None,
        records: list[tuple[str, FileRecord, EncodingRecord | None]],
        tally: list[int],
        decoding: _Decoding | None = None,
    ) -> dict[bytes, EncodingRecord]:
        """Decode one file per new digest in the worker pool (``decoding``: already submitted by
        :meth:`_submit`); fill ``records``; add the decodes and the copies sharing one to ``tally``."""
        out: dict[bytes, EncodingRecord] = {}
        if not jobs:
            return out
        if decoding is None:
            decoding = self._submit(jobs)
        pool, futures = decoding.pool, decoding.futures
        results: dict[bytes, EncodeResult] = {}
        try:
            for i, (chunk, fut) in enumerate(futures):
                self.heartbeat = time.monotonic()
                if self._stop.is_set():  # stopping: what has not started stays unrecorded for the next start
                    for _, later in futures[i:]:
                        later.cancel()
                    if fut.cancelled():
                        continue
                try:
                    results.update(zip(chunk, fut.result(self.unit_timeout_s)))
                except cf.TimeoutError:  # a hung decoder: its pool is killed; each file of the unit alone
                    if len(chunk) == 1:
                        results[chunk[0]] = self._hung(jobs[chunk[0]][0][0])
                    else:
                        self._hung(f"a batch of {len(chunk)} files")
                        for d in chunk:
                            results[d] = self._encode_alone(jobs[d][0][0])
                except (BrokenProcessPool, cf.CancelledError):
                    # a worker died (a codec crash?), or a hang killed the pool: retry its files one by one
                    if self._pool is pool:
                        self._pool = None
                    for d in chunk:
                        results[d] = self._encode_alone(jobs[d][0][0])
                except Exception as exc:  # e.g. the CNN model vanished after start-up
                    logger.error("encoder failed on a batch of %d files: %s", len(chunk), exc)
                    for d in chunk:
                        results[d] = EncodeResult(False, reason=f"encoder failed: {exc}")
        except BrokenProcessPool:
            self._pool = None
        for digest, files in jobs.items():
            if digest not in results and self._stop.is_set():
                continue
            res = results.get(digest) or EncodeResult(False, reason="the decoder process is unavailable")
            tally[0] += 1
            if res.ok:
                tally[1] += len(files) - 1  # copies in the same batch share the one decode
            for path, st in files:
                if not _unchanged(path, st):
                    self._retouch(path)  # written to while we read it: look again once settled
                    continue
                if res.ok:
                    enc = EncodingRecord(res.width, res.height, res.format, res.hashes or {}, hash_params,
                                         res.vector, cnn_id if res.vector is not None else None)
                    first = digest not in out
                    out[digest] = enc
                    records.append((path, FileRecord.from_stat(st, digest), enc if first else None))
                else:
                    _, rec = self._unreadable(path, st, res.reason or "unknown decode error")
                    if rec is not None:
                        records.append((path, FileRecord(rec.size, rec.mtime_ns, rec.dev, rec.inode, digest,
                                                         "unreadable", rec.error, rec.encoded_at), None))
        return out


def _vector(enc: EncodingRecord) -> np.ndarray | None:
    return np.frombuffer(enc.cnn_vector, dtype=np.float32) if enc.cnn_vector else None


def _unchanged(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def is_utf8(path: str) -> bool:
    """False when ``path`` came from bytes that are not valid UTF-8 (``os.fsdecode`` surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

"""The pipeline: file events → stat → digest → (reuse | decode in a worker) → store → index.

One consumer thread applies every change, so the store is written in order and each batch of
files is one LMDB transaction. The index is updated only after the commit: a crash in between
loses nothing (the index is rebuilt from the store at start-up).
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from dedupd.daemon.config import Config
from dedupd.daemon.encoder import EncodeResult, EncodeSpec, encode_job, file_digest, warm_up
from dedupd.daemon.index import FileInfo, MatchIndex
from dedupd.daemon.store import EncodingRecord, FileRecord, Store

logger = logging.getLogger(__name__)

BATCH = 32


@dataclass
class Counters:
    """What ``dedupd status`` shows; plain ints updated by the pipeline thread."""

    started_at: float = field(default_factory=time.time)
    decoded: int = 0  # files decoded since start
    reused: int = 0  # files whose digest was already encoded (copies, renames)
    unreadable: int = 0  # unreadable files recorded since start
    processed: int = 0
    quarantined: int = 0
    restored: int = 0


@dataclass(frozen=True)
class Work:
    kind: str  # upsert | delete | delete_dir | move | move_dir | call
    path: str = ""
    dest: str = ""
    call: Callable[[], None] | None = None


def encode_spec(config: Config) -> EncodeSpec:
    cnn = config.cnn
    return EncodeSpec(
        methods=tuple(config.hash_methods()),
        fast=config.decode == "fast",
        exif_transpose=config.exif_transpose,
        cnn_model=cnn.model if cnn else None,
        cnn_weights=cnn.weights if cnn else None,
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
        self.counters = Counters()
        self.queue: queue.Queue[Work] = queue.Queue(maxsize=20000)
        self._on_change = on_change
        self._event = on_event
        self._retouch = retouch
        self._stop = threading.Event()
        self._busy = threading.Event()
        self._pool: cf.ProcessPoolExecutor | None = None
        self.spec = encode_spec(config)

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
        """Adopt a reloaded config (runs on the pipeline thread via a ``call`` work item)."""
        self.config = config
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
            self._apply(first)
            return
        batch = [first.path]
        while len(batch) < BATCH:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt.kind != "upsert":
                self._upsert(batch)
                batch = []
                self._apply(nxt)
                break
            batch.append(nxt.path)
        if batch:
            self._upsert(batch)

    def _apply(self, work: Work) -> None:
        try:
            if work.kind == "delete":
                self.forget([work.path])
            elif work.kind == "delete_dir":
                prefix = work.path.rstrip("/") + "/"
                self.forget([p for p in list(self.index.files) if p.startswith(prefix)]
                            + [p for p, _ in self.store.iter_files() if p.startswith(prefix)])
            elif work.kind in ("move", "move_dir"):
                self._move(work.path, work.dest, is_dir=work.kind == "move_dir")
            elif work.kind == "call" and work.call is not None:
                work.call()
        except Exception:
            logger.exception("could not apply %s", work)

    # -- deletes and moves ---------------------------------------------------------------------

    def forget(self, paths: list[str]) -> None:
        """Drop paths from store and index (files deleted or moved out of the roots)."""
        paths = sorted(set(paths))
        if not paths:
            return
        self.store.put_files([], deletes=paths)
        changed = False
        for p in paths:
            if self.index.remove(p) is not None:
                changed = True
                self._event("removed", path=p)
        if changed:
            self._on_change()

    def _move(self, src: str, dst: str, *, is_dir: bool) -> None:
        moved = self.store.rename_prefix(src, dst)
        with self.index.lock:
            if is_dir:
                prefix = src.rstrip("/") + "/"
                for p in [p for p in self.index.files if p.startswith(prefix)]:
                    self.index.rename(p, dst.rstrip("/") + "/" + p[len(prefix):])
            else:
                self.index.rename(src, dst)
        logger.info("moved", extra={"src": src, "dst": dst, "records": moved})
        self._event("moved", path=dst, src=src, records=moved)
        self._on_change()
        if not moved and not is_dir:
            self._upsert([dst])  # we never saw the source: treat the destination as new

    # -- upserts -------------------------------------------------------------------------------

    def _pool_get(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("forkserver")
            self._pool = cf.ProcessPoolExecutor(max_workers=max(1, self.config.workers), mp_context=ctx)
            self._pool.submit(warm_up).result()
        return self._pool

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
        hash_params, cnn_id = self.config.hash_params_id(), self.config.cnn_model_id()
        records: list[tuple[str, FileRecord, EncodingRecord | None]] = []
        gone: list[str] = []
        jobs: dict[bytes, list[tuple[str, os.stat_result]]] = {}
        known: dict[bytes, EncodingRecord] = {}
        for path in dict.fromkeys(paths):
            try:
                st = os.stat(path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    gone.append(path)
                else:
                    self._unreadable(path, None, f"cannot stat: {exc.strerror or exc}")
                continue
            if not os.path.isfile(path):
                continue
            old = self.store.get_file(path)
            if old is not None and old.same_stat(st):
                if old.state != "ok" or self._fresh(old.digest, hash_params, cnn_id):
                    continue  # unchanged (and unreadable files are reported once only)
            try:
                digest = file_digest(path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    gone.append(path)
                    continue
                reason = ("permission denied: make the file readable by the user running dedupd"
                          if exc.errno == errno.EACCES else f"cannot read: {exc.strerror or exc}")
                if exc.errno == errno.ELOOP:
                    reason = "symlink loop"
                p, rec = self._unreadable(path, st, reason)
                if rec is not None and not (old is not None and old.same_stat(st) and old.state != "ok"):
                    records.append((p, rec, None))
                continue
            enc = known.get(digest) or self.store.get_encoding(digest)
            if enc is not None and not any(enc.stale(self.spec.methods, hash_params, cnn_id)):
                known[digest] = enc
                records.append((path, FileRecord.from_stat(st, digest), None))
                self.counters.reused += 1
            else:
                jobs.setdefault(digest, []).append((path, st))
        new_encodings = self._decode(jobs, hash_params, cnn_id, records)
        if records or gone:
            self.store.put_files(records, deletes=gone)
        for p in gone:
            if self.index.remove(p) is not None:
                self._event("removed", path=p)
        for path, rec, _ in records:
            self.counters.processed += 1
            if rec.state != "ok":
                self.index.remove(path)
                continue
            enc = new_encodings.get(rec.digest) or known.get(rec.digest) or self.store.get_encoding(rec.digest)
            if enc is None:
                continue
            vector = np.frombuffer(enc.cnn_vector, dtype=np.float32) if enc.cnn_vector else None
            info = FileInfo(rec.digest, rec.size, rec.mtime_ns, enc.width, enc.height)
            self.index.add(path, info, enc.hashes, vector)
            dups = self.index.duplicates_of(path)
            if dups:
                self._event("found", path=path, duplicates=[{"path": q, **ev.as_dict()} for q, ev in dups[:20]])
        if records or gone:
            self._on_change()

    def _fresh(self, digest: bytes | None, hash_params: str, cnn_id: str | None) -> bool:
        enc = self.store.get_encoding(digest) if digest else None
        return enc is not None and not any(enc.stale(self.spec.methods, hash_params, cnn_id))

    def _decode(
        self,
        jobs: dict[bytes, list[tuple[str, os.stat_result]]],
        hash_params: str,
        cnn_id: str | None,
        records: list[tuple[str, FileRecord, EncodingRecord | None]],
    ) -> dict[bytes, EncodingRecord]:
        """Decode one file per new digest in the worker pool; fill ``records``."""
        out: dict[bytes, EncodingRecord] = {}
        if not jobs:
            return out
        futures: dict[bytes, cf.Future[EncodeResult]] = {}
        try:
            pool = self._pool_get()
            for digest, files in jobs.items():
                futures[digest] = pool.submit(encode_job, files[0][0], self.spec)
        except BrokenProcessPool:
            self._pool = None
        for digest, files in jobs.items():
            try:
                res = futures[digest].result() if digest in futures else EncodeResult(False, reason="decoder pool unavailable")
            except BrokenProcessPool:
                self._pool = None  # a worker died (e.g. a codec crash): restart it for the next batch
                res = EncodeResult(False, reason="the decoder process crashed on this file")
            self.counters.decoded += 1
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


def _unchanged(path: str, st: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_size, now.st_mtime_ns, now.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)

"""The LMDB store: file records, encodings by content digest, the quarantine manifest, metadata.

The only module that imports ``lmdb``. One environment in ``store_dir`` holds seven named
databases (layout in :mod:`.records`): ``files``, ``digests`` (reverse index digest →
paths), ``encodings``, ``quarantine``, ``meta``, ``edges`` (the duplicate graph: written in the
transaction of the encodings that produce the edges, pruned with them) and ``journal`` (what each
commit changed, for a start after a crash: :mod:`.journal`). Every public write is one transaction, so a
``kill -9`` leaves either all of it or none of it; the environment keeps LMDB's default
``sync=True`` so a committed manifest entry is on disk before the move it announces.

Why a reverse index rather than a refcount per encoding: the pipeline needs "which paths have
this digest?" (a copy or a rename reuses the encoding, and byte-identical files are duplicates),
which a counter cannot answer, and a counter that drifts (a bug, a migration) would prune an
encoding still in use or keep one forever; the index is checked, not trusted.

Threads: one ``Store`` per directory per process, shared by all threads (LMDB forbids opening
an environment twice in a process). Iterators read in chunks of short read transactions, so
they never pin old pages or block the map from growing; they are not one global snapshot.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Self, TypeVar, cast

import lmdb

from dedupd.daemon.store import records as r
from dedupd.daemon.store.journal import JournalMixin
from dedupd.daemon.store.lock import ResizeGate, WriterLock
from dedupd.daemon.store.manifest import ManifestMixin, QuarantineEntry
from dedupd.daemon.store.records import (
    EncoderMismatch,
    EncodingRecord,
    FileRecord,
    GraphStamp,
    StoreStats,
    StrPath,
)
from dedupd.daemon.store.review import REVIEW_DB, ReviewMixin
from dedupd.daemon.store.schema import DB_NAMES, SCHEMA_VERSION, init_or_migrate
from dedupd.errors import StoreError, StoreWriteError

__all__ = ["SCHEMA_VERSION", "Edge", "EncoderMismatch", "EncodingRecord", "FileRecord", "GraphStamp",
           "QuarantineEntry", "Store", "StoreStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_MAP_SIZE = 64 << 20  # grows by doubling; LMDB maps lazily, so only used pages cost memory
_CHUNK = 4096
#: one edge of the duplicate graph: two content digests and their scores (in ``GraphStamp.names`` order)
Edge = tuple[bytes, bytes, "Sequence[float | None]"]


class Store(ManifestMixin, ReviewMixin, JournalMixin):
    """An open store. Use :meth:`open`, then ``close()`` or a ``with`` block."""

    def __init__(self, env: lmdb.Environment, dbs: dict[str, Any], path: str, readonly: bool,
                 lock: WriterLock | None) -> None:
        """Internal; use :meth:`open`."""
        self._env, self._dbs, self.path, self.readonly, self._lock = env, dbs, path, readonly, lock
        self._gate = ResizeGate()
        self._journal_init()

    @classmethod
    def open(cls, store_dir: str | os.PathLike[str], readonly: bool = False, *, lock: bool | None = None,
             map_size: int = DEFAULT_MAP_SIZE) -> Store:
        """Open (creating if needed and writable) the store in ``store_dir``.

        Args:
            store_dir: the directory of the LMDB environment (created with its parents if writable).
            readonly: open for reading only (another process may be writing).
            lock: take the single-writer lock; default: when not ``readonly``.
            map_size: initial map size in bytes; it doubles whenever a write needs more.

        Raises:
            StoreLockedError: another process holds the writer lock (its pid is in the message).
            StoreError: missing (when readonly), unreadable, newer schema, or needs migrating (readonly).
        """
        path = os.path.abspath(os.fspath(store_dir))
        if not readonly:
            try:
                os.makedirs(path, mode=0o750, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store_dir {path}: {exc.strerror}; check permissions") from exc
        elif not os.path.isfile(os.path.join(path, "data.mdb")):
            raise StoreError(f"no dedupd store in {path}; run `dedupd scan` or start the daemon to create it")
        writer_lock = WriterLock(path) if (not readonly if lock is None else lock) else None
        try:
            env = lmdb.open(path, map_size=map_size, max_dbs=len(DB_NAMES) + 2, readonly=readonly,
                            subdir=True, lock=True, sync=True, metasync=True, readahead=False,
                            create=not readonly, mode=0o640)
        except lmdb.Error as exc:
            if writer_lock:
                writer_lock.release()
            raise StoreError(f"cannot open the store in {path}: {exc}") from exc
        try:
            if readonly:  # handles opened inside a read-only txn are unusable after it (python-lmdb)
                dbs = {}
                for n in DB_NAMES:
                    try:
                        dbs[n] = env.open_db(n.encode(), create=False)
                    except lmdb.NotFoundError:
                        if n not in ("edges", "journal"):  # added by schemas 2 and 3: an older store
                            # says "needs migrating" below
                            raise
                try:  # added after schema 1's first release: older stores have no decisions yet
                    dbs[REVIEW_DB] = env.open_db(REVIEW_DB.encode(), create=False)
                except lmdb.NotFoundError:
                    pass
                with env.begin() as txn:
                    init_or_migrate(txn, dbs, path, readonly)
            else:  # one write txn: the sub-databases and the schema stamp appear together or not at all
                with env.begin(write=True) as txn:
                    dbs = {n: env.open_db(n.encode(), txn=txn) for n in DB_NAMES}
                    dbs[REVIEW_DB] = env.open_db(REVIEW_DB.encode(), txn=txn)
                    init_or_migrate(txn, dbs, path, readonly)
        except (lmdb.Error, StoreError) as exc:
            env.close()
            if writer_lock:
                writer_lock.release()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"the store in {path} is not a dedupd store or is damaged: {exc}") from exc
        return cls(env, dbs, path, readonly, writer_lock)

    def close(self) -> None:
        """Close the environment and release the writer lock (idempotent)."""
        with self._gate.exclusive():
            if self._env is not None:
                self._env.close()
                self._env = None  # type: ignore[assignment]
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------

    def _read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        while True:
            try:
                with self._gate.shared():
                    if self._env is None:
                        raise StoreError(f"the store in {self.path} is closed")
                    with self._env.begin(write=False) as txn:
                        return fn(txn)
            except lmdb.MapResizedError:  # another process grew the map: adopt its size
                self._resize(0)

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        if self.readonly:
            raise StoreError(f"the store in {self.path} was opened read-only")
        while True:
            try:
                with self._gate.shared():
                    if self._env is None:
                        raise StoreError(f"the store in {self.path} is closed")
                    txn = self._env.begin(write=True)
                    try:
                        self._journal_begin()
                        result = fn(txn)
                        trimmed = self._journal_commit(txn)
                        txn.commit()
                    except BaseException:
                        self._journal_abandon()
                        txn.abort()  # fn is re-run from scratch after a resize: no partial writes
                        raise
                    self._journal_committed(trimmed)
                    return result
            except lmdb.MapFullError:
                self._resize(self._env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self._resize(0)
            except lmdb.Error as exc:  # ENOSPC comes as DiskError, or as EIO from mdb_txn_commit
                transient = isinstance(exc, lmdb.DiskError) or "Input/output error" in str(exc)
                raise StoreWriteError(
                    f"cannot write the store in {self.path}: {exc}"
                    + ("; free space on its filesystem" if transient else ""),
                    transient=transient) from exc

    def generation(self) -> int:
        """The id of the last committed write transaction: changes with every commit (persisted;
        an empty transaction commits nothing and leaves it)."""
        with self._gate.shared():
            if self._env is None:
                raise StoreError(f"the store in {self.path} is closed")
            return int(self._env.info()["last_txnid"])

    def _get(self, key: bytes, db: str, txn: lmdb.Transaction) -> bytes | None:
        value = txn.get(key, db=self._dbs[db])
        return None if value is None else bytes(value)

    def _resize(self, size: int) -> None:
        with self._gate.exclusive():
            self._env.set_mapsize(size)
        log.info("store map size now %d bytes", self._env.info()["map_size"])

    # -- files ------------------------------------------------------------------------------

    def get_file(self, path: StrPath) -> FileRecord | None:
        """The record of ``path``, or None."""
        key = r.file_key(r.fs_bytes(path))
        data = self._read(lambda txn: txn.get(key, db=self._dbs["files"]))
        return None if data is None else r.unpack_file(data)[0]

    def put_file(self, path: StrPath, record: FileRecord, encoding: EncodingRecord | None = None) -> None:
        """Record ``path`` and, if given, the encoding of its digest, in one transaction.

        Raises:
            StoreError: ``record`` is ``ok`` but no encoding for its digest is given or stored.
        """
        self.put_files([(path, record, encoding)])

    def put_files(self, batch: Iterable[tuple[StrPath, FileRecord, EncodingRecord | None]],
                  deletes: Iterable[StrPath] = (), edges: Iterable[Edge] | None = None) -> None:
        """Write a batch of ``(path, record, encoding or None)`` and forget ``deletes``: all or nothing.

        Later items see earlier ones, so a batch may give an encoding once for several paths. Keep
        batches to thousands of items, not millions (one transaction holds every dirty page).
        ``edges`` are the duplicate-graph edges of the encodings written (every pair within the
        stamp's radius, see :class:`GraphStamp`): a digest given an encoding loses its old edges
        first, and an edge to a digest not stored at the end of the batch is not written.

        Raises:
            StoreError: an ``ok`` record whose digest has no encoding (nothing is written).
        """
        items = [(r.fs_bytes(p), rec, enc) for p, rec, enc in batch]
        if any(enc is not None and rec.digest is None for _, rec, enc in items):
            raise ValueError("an encoding needs the record's digest to be stored under")
        gone = [r.fs_bytes(p) for p in deletes]
        new_edges = list(edges or ())

        def work(txn: lmdb.Transaction) -> None:
            # encodings that lose their last path are pruned at the end, not on the way: in one
            # batch a.jpg may change content while a new b.jpg takes a.jpg's old content
            orphans: set[bytes] = set()
            for raw, rec, enc in items:
                if enc is not None:
                    assert rec.digest is not None
                    txn.put(rec.digest, r.pack_encoding(enc), db=self._dbs["encodings"])
                    self._note_digest(rec.digest)
                    self._drop_edges(txn, rec.digest)  # re-encoded: its edges are the ones given now
                self._put(txn, raw, rec, orphans)
            for raw in gone:
                self._delete(txn, raw, orphans)
            self._put_edges(txn, new_edges)
            for digest in orphans:
                self._prune(txn, digest)

        self._write(work)

    def delete_prefix(self, directory: StrPath) -> list[str]:
        """Forget every record at or under ``directory`` in one transaction (a range of keys, not a
        scan of the store); returns the paths forgotten."""
        top = r.fs_bytes(directory).rstrip(b"/") or b"/"

        def work(txn: lmdb.Transaction) -> list[bytes]:
            gone = [raw for raw, _ in self._under(txn, top)]
            orphans: set[bytes] = set()
            for raw in gone:
                self._delete(txn, raw, orphans)
            for digest in orphans:
                self._prune(txn, digest)
            return gone

        return [os.fsdecode(raw) for raw in self._write(work)]

    def _under(self, txn: lmdb.Transaction, top: bytes) -> list[tuple[bytes, FileRecord]]:
        """``(path bytes, record)`` of every record at or under ``top``: the key range of the prefix,
        plus the few hashed long-path keys (they sort first)."""
        def under(raw: bytes) -> bool:
            return raw == top or raw.startswith(top if top == b"/" else top + b"/")

        cur = txn.cursor(db=self._dbs["files"])
        out: list[tuple[bytes, FileRecord]] = []
        for start in (b"\0", top):  # hashed long-path keys first, then the prefix range
            ok = cur.set_range(start)
            while ok and bytes(cur.key()).startswith(start):
                rec, long_path = r.unpack_file(cur.value())
                raw = long_path if long_path is not None else bytes(cur.key())
                if under(raw):
                    out.append((raw, rec))
                ok = cur.next()
        return out

    def delete_file(self, path: StrPath) -> bool:
        """Forget ``path`` (pruning its encoding when no other path has the digest); True if it existed."""
        raw = r.fs_bytes(path)
        return self._write(lambda txn: self._delete(txn, raw))

    def rename_prefix(self, old: StrPath, new: StrPath) -> int:
        """Re-key every record at or under ``old`` to the same place under ``new``, in one transaction.

        ``old`` may be a directory (a moved folder) or a single file. Records already at a target
        path are replaced. Returns the number of records moved. No encoding is touched.
        """
        old_raw, new_raw = r.fs_bytes(old).rstrip(b"/") or b"/", r.fs_bytes(new).rstrip(b"/") or b"/"
        if old_raw == new_raw:
            return 0

        def work(txn: lmdb.Transaction) -> int:
            moving = self._under(txn, old_raw)
            base = b"" if new_raw == b"/" else new_raw
            orphans: set[bytes] = set()  # a replaced target's content may be what another record brings
            for raw, rec in moving:
                target = base + (raw if old_raw == b"/" else raw[len(old_raw):])
                self._put(txn, target, rec, orphans)
                self._delete(txn, raw, orphans)
            for digest in orphans:
                self._prune(txn, digest)
            return len(moving)

        return self._write(work)

    def _put(self, txn: lmdb.Transaction, raw: bytes, rec: FileRecord, orphans: set[bytes] | None = None) -> None:
        """Write one record; a digest it stops referencing is pruned now, or added to ``orphans``."""
        files, digests = self._dbs["files"], self._dbs["digests"]
        key = r.file_key(raw)
        old = txn.get(key, db=files)
        old_digest = r.unpack_file(old)[0].digest if old is not None else None
        if rec.state == "ok" and (rec.digest is None or txn.get(rec.digest, db=self._dbs["encodings"]) is None):
            raise StoreError(f"refusing to record {raw!r} as ok: no encoding stored for its digest; "
                             "pass the encoding with the file record")
        txn.put(key, r.pack_file(rec, raw if r.is_hashed_key(key) else None), db=files)
        self._note_path(raw)
        if old_digest != rec.digest:
            if old_digest is not None:
                txn.delete(r.digest_prefix(old_digest) + key, db=digests)
                if orphans is None:
                    self._prune(txn, old_digest)
                else:
                    orphans.add(old_digest)
            if rec.digest is not None:
                txn.put(r.digest_prefix(rec.digest) + key, b"", db=digests)

    def _delete(self, txn: lmdb.Transaction, raw: bytes, orphans: set[bytes] | None = None) -> bool:
        """Forget one record; its digest, if now unreferenced, is pruned now, or added to ``orphans``."""
        key = r.file_key(raw)
        old = txn.pop(key, db=self._dbs["files"])
        if old is None:
            return False
        self._note_path(raw)
        digest = r.unpack_file(old)[0].digest
        if digest is not None:
            txn.delete(r.digest_prefix(digest) + key, db=self._dbs["digests"])
            if orphans is not None:
                orphans.add(digest)
            else:
                self._prune(txn, digest)
        return True

    def _prune(self, txn: lmdb.Transaction, digest: bytes) -> None:
        prefix = r.digest_prefix(digest)
        cur = txn.cursor(db=self._dbs["digests"])
        if not (cur.set_range(prefix) and bytes(cur.key()).startswith(prefix)):
            if txn.delete(digest, db=self._dbs["encodings"]):
                self._note_digest(digest)
                self._drop_edges(txn, digest)

    # -- the duplicate graph ------------------------------------------------------------------

    def _drop_edges(self, txn: lmdb.Transaction, digest: bytes) -> int:
        """Delete every edge of ``digest`` (both directions); returns how many."""
        edges = self._dbs["edges"]
        prefix = r.digest_prefix(digest)
        cur = txn.cursor(db=edges)
        others = []
        ok = cur.set_range(prefix)
        while ok and bytes(cur.key()).startswith(prefix):
            others.append(bytes(cur.key())[len(prefix):])
            ok = cur.delete()  # moves to the next key
        for other in others:
            txn.delete(r.edge_key(other, digest), db=edges)
        if others:
            self._note_digest(digest)
        return len(others)

    def _put_edges(self, txn: lmdb.Transaction, edges: Iterable[Edge],
                   expect: dict[bytes, dict[str, int]] | None = None) -> int:
        """Write edges whose two digests are stored (and, with ``expect``, still have those hashes)."""
        db, encodings = self._dbs["edges"], self._dbs["encodings"]
        present: dict[bytes, bool] = {}

        def ok(d: bytes) -> bool:
            if d not in present:
                raw = txn.get(d, db=encodings)
                present[d] = raw is not None and (
                    expect is None or dict(r.unpack_encoding(raw).hashes) == expect.get(d))
            return present[d]

        n = 0
        for a, b, scores in edges:
            if a == b or not (ok(a) and ok(b)):
                continue
            lo, hi = (a, b) if a < b else (b, a)
            txn.put(r.edge_key(lo, hi), r.pack(list(scores)), db=db)
            txn.put(r.edge_key(hi, lo), b"", db=db)
            self._note_digest(a)
            self._note_digest(b)
            n += 1
        return n

    def graph_stamp(self) -> GraphStamp | None:
        """What the stored edges are (None: no edges were ever derived, e.g. a migrated store)."""
        data = self._read(lambda txn: txn.get(b"graph", db=self._dbs["meta"]))
        return None if data is None else r.unpack_stamp(data)

    def reset_graph(self, stamp: GraphStamp, *, clear: bool) -> None:
        """Record a new stamp; with ``clear``, delete every stored edge first (one transaction)."""
        def work(txn: lmdb.Transaction) -> None:
            if clear:
                txn.drop(self._dbs["edges"], delete=False)
            txn.put(b"graph", r.pack_stamp(stamp), db=self._dbs["meta"])
            self._note_graph()

        self._write(work)

    def put_edges(self, stamp: GraphStamp, edges: Iterable[Edge], expect: dict[bytes, dict[str, int]]) -> int:
        """Write a derived batch of edges and the derivation's progress (``stamp``), in one transaction.

        Nothing is written when the stored stamp has other settings (the config changed meanwhile).
        An edge is skipped when one of its digests is gone or no longer has the hashes in
        ``expect`` (re-encoded meanwhile: the new encoding came with its own edges). Returns the
        number written, or -1 when the stamp no longer matches.
        """
        batch = list(edges)

        def work(txn: lmdb.Transaction) -> int:
            raw = txn.get(b"graph", db=self._dbs["meta"])
            if raw is None or not r.unpack_stamp(raw).same_settings(stamp):
                return -1
            n = self._put_edges(txn, batch, expect)
            txn.put(b"graph", r.pack_stamp(stamp), db=self._dbs["meta"])
            self._note_graph()
            return n

        return self._write(work)

    def replace_graph(self, stamp: GraphStamp, edges: Iterable[Edge]) -> int:
        """Every stored edge replaced by ``edges`` (those whose two digests are stored), under the
        new ``stamp``: one transaction. Returns the number written."""
        batch = list(edges)

        def work(txn: lmdb.Transaction) -> int:
            txn.drop(self._dbs["edges"], delete=False)
            n = self._put_edges(txn, batch)
            txn.put(b"graph", r.pack_stamp(stamp), db=self._dbs["meta"])
            self._note_graph()
            return n

        return self._write(work)

    def edges_of(self, digest: bytes) -> list[tuple[bytes, bytes, list[float | None]]]:
        """The stored edges of ``digest``, as ``(a, b, scores)`` with ``a < b``."""
        def read(txn: lmdb.Transaction) -> list[tuple[bytes, bytes, list[float | None]]]:
            db, prefix = self._dbs["edges"], r.digest_prefix(digest)
            cur = txn.cursor(db=db)
            out = []
            ok = cur.set_range(prefix)
            while ok and (key := bytes(cur.key())).startswith(prefix):
                other, value = key[len(prefix):], bytes(cur.value())
                if not value:  # kept under the other side: (other, digest)
                    value = bytes(txn.get(r.edge_key(other, digest), db=db) or b"")
                if value:
                    out.append((digest, other, r.unpack(value)) if digest < other else (other, digest, r.unpack(value)))
                ok = cur.next()
            return out

        return cast(list[tuple[bytes, bytes, list[float | None]]], self._read(read))

    def iter_edges(self, chunk: int = 8192) -> Iterator[list[tuple[bytes, bytes, list[float | None]]]]:
        """Every stored edge once, as lists of ``(a, b, scores)`` with ``a < b``, in key order.

        Chunks of ``chunk`` keys are read in short read transactions (not one snapshot: edges
        written meanwhile may or may not be seen; the index checks what it loads).
        """
        last: bytes | None = None
        while True:
            def read(txn: lmdb.Transaction, last: bytes | None = last) -> tuple[list[Any], bytes | None, bool]:
                cur = txn.cursor(db=self._dbs["edges"])
                ok = cur.set_range(last) if last is not None else cur.first()
                if ok and last is not None and cur.key() == last:
                    ok = cur.next()
                out = []
                key = None
                for _ in range(chunk):
                    if not ok:
                        break
                    key, value = cur.item()
                    if len(value):
                        k = bytes(key)
                        n = k[0]
                        out.append((k[1:1 + n], k[1 + n:], r.unpack(value)))
                    ok = cur.next()
                return out, (bytes(key) if key is not None else None), ok

            items, last_key, more = self._read(read)
            if items:
                yield items
            if not more or last_key is None:
                return
            last = last_key

    def _scan(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` of ``db`` with ``prefix`` in key order, one short transaction per chunk."""
        last: bytes | None = None
        while True:
            def chunk(txn: lmdb.Transaction, last: bytes | None = last) -> list[tuple[bytes, bytes]]:
                cur = txn.cursor(db=self._dbs[db])
                start = last if last is not None else prefix
                ok = cur.set_range(start) if start else cur.first()
                if ok and cur.key() == last:
                    ok = cur.next()
                if not ok:
                    return []
                if not prefix:  # the whole table: the cursor's own iterator, no Python step per item
                    return cast(list[tuple[bytes, bytes]], list(itertools.islice(cur.iternext(), _CHUNK)))
                out: list[tuple[bytes, bytes]] = []
                while ok and len(out) < _CHUNK and (key := bytes(cur.key())).startswith(prefix):
                    out.append((key, bytes(cur.value())))
                    ok = cur.next()
                return out

            items = self._read(chunk)
            yield from items
            if len(items) < _CHUNK:
                return
            last = items[-1][0]

    def iter_files(self) -> Iterator[tuple[str, FileRecord]]:
        """Every ``(path, record)``; paths as ``os.fsdecode`` gives them (non-UTF-8 bytes as surrogates)."""
        for key, value in self._scan("files"):
            rec, long_path = r.unpack_file(value)
            yield os.fsdecode(long_path if long_path is not None else key), rec

    def iter_ok_files(self) -> Iterator[tuple[str, int, int, bytes]]:
        """``(path, size, mtime_ns, digest)`` of every record in state ``ok``: the start-up load's
        fast path (no record objects built)."""
        unpack = r.unpack
        encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()  # os.fsdecode's
        for key, value in self._scan("files"):
            _v, size, mtime_ns, _dev, _inode, digest, state, _error, _at, long_path = unpack(value)
            if state == "ok":
                yield (long_path if long_path is not None else key).decode(encoding, errors), size, mtime_ns, digest

    def iter_encodings_brief(self) -> Iterator[tuple[bytes, int, int, dict[str, int], bytes | None]]:
        """``(digest, width, height, hashes, cnn vector bytes or None)`` of every encoding (fast path)."""
        unpack = r.unpack
        for key, value in self._scan("encodings"):
            _v, width, height, _fmt, hashes, _params, vector, _model = unpack(value)
            yield key, width, height, hashes, vector

    def files_with_digest(self, digest: bytes) -> list[str]:
        """Paths whose content digest is ``digest``, sorted by their stored key."""
        prefix = r.digest_prefix(digest)
        out = []
        for key, _ in self._scan("digests", prefix):
            fkey: bytes | None = key[len(prefix):]
            if fkey is not None and r.is_hashed_key(fkey):
                data = self._read(functools.partial(self._get, fkey, "files"))
                fkey = r.unpack_file(data)[1] if data is not None else None
            if fkey is not None:
                out.append(os.fsdecode(fkey))
        return out

    def count_files(self) -> int:
        """Number of file records."""
        return self._read(lambda txn: txn.stat(self._dbs["files"])["entries"])

    # -- encodings --------------------------------------------------------------------------

    def get_encoding(self, digest: bytes) -> EncodingRecord | None:
        """The encoding of content ``digest``, or None."""
        data = self._read(lambda txn: txn.get(digest, db=self._dbs["encodings"]))
        return None if data is None else r.unpack_encoding(data)

    def put_encoding(self, digest: bytes, encoding: EncodingRecord, edges: Iterable[Edge] = ()) -> None:
        """Replace the encoding of a digest some file has (a lazy re-encode after a config change),
        with the edges of its new values (its old edges are dropped).

        Raises:
            StoreError: no file record references ``digest`` (it would never be pruned).
        """
        new_edges = list(edges)

        def work(txn: lmdb.Transaction) -> None:
            prefix = r.digest_prefix(digest)
            cur = txn.cursor(db=self._dbs["digests"])
            if not (cur.set_range(prefix) and bytes(cur.key()).startswith(prefix)):
                raise StoreError("refusing to store an encoding no file references; use put_file")
            txn.put(digest, r.pack_encoding(encoding), db=self._dbs["encodings"])
            self._note_digest(digest)
            self._drop_edges(txn, digest)
            self._put_edges(txn, new_edges)

        self._write(work)

    def iter_encodings(self) -> Iterator[tuple[bytes, EncodingRecord]]:
        """Every ``(digest, encoding)``, in digest order."""
        for key, value in self._scan("encodings"):
            yield key, r.unpack_encoding(value)

    # -- metadata ---------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """All metadata (``schema_version``, ``hash_params``, ``hash_methods``, ``cnn_model``, ...)."""
        return {k.decode(): r.unpack(v) for k, v in self._scan("meta")}

    def set_encoders(self, methods: Iterable[str], cnn_model_id: str | None, *, hash_params: str) -> None:
        """Record the encoder settings the store now serves (after deciding what to re-encode)."""
        values = {b"hash_methods": sorted(methods), b"cnn_model": cnn_model_id, b"hash_params": hash_params}

        def work(txn: lmdb.Transaction) -> None:
            for k, v in values.items():
                txn.put(k, r.pack(v), db=self._dbs["meta"])
            self._note_graph()

        self._write(work)

    def encoder_mismatch(self, config_methods: Iterable[str], cnn_model_id: str | None, *,
                         hash_params: str) -> EncoderMismatch:
        """Compare a config's encoders with the ones recorded by :meth:`set_encoders`."""
        meta = self.meta()
        wanted = frozenset(config_methods)
        stale = wanted if meta.get("hash_params") != hash_params else wanted - set(meta.get("hash_methods", ()))
        cnn = cnn_model_id is not None and cnn_model_id != meta.get("cnn_model")
        count = self._read(lambda txn: txn.stat(self._dbs["encodings"])["entries"])
        return EncoderMismatch(stale, cnn, count)

    def stats(self) -> StoreStats:
        """Entry counts, file size on disk and current map size."""
        def work(txn: lmdb.Transaction) -> tuple[int, ...]:
            return tuple(txn.stat(self._dbs[n])["entries"] for n in ("files", "encodings", "quarantine", "edges"))

        files, encodings, quarantine, edges = self._read(work)
        disk = os.path.getsize(os.path.join(self.path, "data.mdb"))
        return StoreStats(files, encodings, quarantine, disk, self._env.info()["map_size"], edges // 2)

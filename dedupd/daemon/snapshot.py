"""A sealed snapshot of the loaded index: what a start-up would read from the store, as flat arrays.

At a million files the index load before the socket answers costs ~8-11 s of CPU: two million
LMDB records read and unpacked one by one, then the stored edges read, checked and linked. After
a clean stop nothing of that has changed, so the stop writes ``index.snapshot.npz`` next to the
store (:func:`write_snapshot`) and the next start adopts it (:func:`adopt_snapshot`) when its seal
matches, building the same index from numpy columns without touching the records.

What it holds (an uncompressed ``.npz``: numpy arrays only, read with ``allow_pickle=False``;
each member carries the zip CRC, checked as it is read), in the order a load from the store reads
them (contents by digest, files by store key, edges by digest pair) so that the index built from
it is the one :func:`~dedupd.daemon.loader.load_index` builds:

- ``meta``: JSON: the format, the seal, the reach, the hash key layouts and the score names;
- contents: digests (``c_digest``, one row of bytes each), width and height, the hash values
  (``c_hash``: one uint64 column per hash name, ``c_layout``: which names a content has, in its
  dict order), whether the store holds a vector (``c_vec``);
- files: the paths (``f_path``: fs-encoded, NUL-separated), their content (``f_cid``), size and
  mtime;
- edges: both contents (``e_a``, ``e_b``) and the scores (``e_s``, NaN for None).

The seal (see :mod:`dedupd.reports.seal`, same digests): the store's real path, the inode of its
``data.mdb``, its last committed transaction id (:meth:`Store.generation`), the config digest and
the code digest. Commits since (a crash after the daemon wrote something) are replayed from the
store's change journal (:mod:`dedupd.daemon.store.journal`, :func:`replay`): each content they
touched is rebuilt from its records as a load builds it; when the journal does not reach back to
the snapshot, holds a change it cannot replay, or more than :data:`REPLAY_FRACTION` of its files,
the store is loaded. Only a complete graph of a hash-only index is written (a CNN index: the normal load).
Anything unexpected when adopting (missing, foreign, truncated, corrupted, inconsistent) means
the normal load, with a warning when the file was there but unusable: never a crash, never an
index that differs from the store's.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any

import numpy as np

from dedupd.daemon.config import Config
from dedupd.daemon.gcpause import gc_paused
from dedupd.daemon.index import FileInfo, MatchIndex, Reach
from dedupd.daemon.loader import matching_of, release_memory
from dedupd.daemon.store import Store
from dedupd.daemon.store.journal import JournalChanges
from dedupd.daemon.store.records import file_key
from dedupd.daemon.walk import root_of
from dedupd.reports.seal import code_digest, config_digest

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = "index.snapshot.npz"
TMP_PREFIX = ".snapshot-"
FORMAT = 1
#: edges handed to :meth:`MatchIndex.load_edges` per lock hold
EDGE_CHUNK = 8192
#: journal entries replayed onto a snapshot at most, as a fraction of its files (and at least
#: REPLAY_MIN): a replay costs ~0.1 ms an entry (a few point reads), a load ~0.04 ms a file
REPLAY_FRACTION = 0.1
REPLAY_MIN = 1000


class SnapshotError(ValueError):
    """The snapshot file is unusable (truncated, corrupted, inconsistent)."""


def snapshot_path(store: Store) -> str:
    return os.path.join(store.path, SNAPSHOT_NAME)


#: settings that change what is decided about the groups and where reports go, not the index or
#: its near edges: a restart after changing them adopts the snapshot (the groups are built anew)
NOT_INDEXED = frozenset({"report_dir", "report_mode", "policy", "quarantine_dir", "dry_run", "keep"})


def seal_of(store: Store, config: Config, txnid: int | None = None) -> dict[str, Any]:
    """What a snapshot must have been written against to be adopted now (``txnid``: the store's
    generation read by the caller, default now)."""
    try:
        ino = os.stat(os.path.join(store.path, "data.mdb")).st_ino
    except OSError:
        ino = -1
    return {"store": os.path.realpath(store.path), "mdb_inode": ino,
            "txnid": store.generation() if txnid is None else txnid,
            "config": config_digest(config, NOT_INDEXED), "code": code_digest()}


class Window:
    """Proof that what is captured of the index during it is the index a load of the store at
    :attr:`txnid` builds, for a daemon that runs on (the idle seal, :mod:`dedupd.daemon.idleseal`).

    No lock spans a pipeline commit and the index updates that follow it (they come after the
    commit, each under the index lock), so: the store's generation is read first, then the index's
    (:attr:`MatchIndex.generation`, bumped by every change); the capture follows; :meth:`holds`
    then asks ``settled`` (the pipeline holds no work: every commit made so far has its index
    updates applied), and reads both generations again. A commit up to :attr:`txnid` whose updates
    came after the first read bumped the index's generation, or is still running (not settled); a
    commit after it changed the store's. Either way :meth:`holds` is False and nothing is stamped.
    A commit after :meth:`holds` is later than the stamp's txnid (replayed from the journal). At a clean stop (nothing commits)
    ``settled`` is always true."""

    def __init__(self, store: Store, index: MatchIndex, settled: Callable[[], bool] = lambda: True) -> None:
        self._store, self._index, self._settled = store, index, settled
        self.txnid = store.generation()
        self.index_generation = index.generation

    def holds(self) -> bool:
        """Nothing committed or changed since the window opened, and nothing pending (in this order)."""
        return (self._settled() and self._index.generation == self.index_generation
                and self._store.generation() == self.txnid)


def _reach_json(reach: Reach) -> dict[str, Any]:
    return {"radii": [list(r) for r in reach.radii], "cnn": reach.cnn}


def remove_snapshot(store: Store) -> None:
    """Remove the snapshot (nothing to do when there is none)."""
    try:
        os.unlink(snapshot_path(store))
    except FileNotFoundError:
        pass


def write_snapshot(store: Store, config: Config, index: MatchIndex, window: Window | None = None) -> bool | None:
    """Write the snapshot of ``index`` sealed with the store's generation at the start of ``window``
    (default: one opened now, for a clean stop: the store quiescent, the index its image).

    The index's contents, files and edges are copied under its lock (references to objects it
    never mutates: lists of its keys and values, the edge triples); the arrays are built and
    written outside it, to a temporary file renamed into place (a kill mid-write leaves nothing
    adoptable). Returns True when written or still current (then not rewritten), False (and
    removes any older snapshot) when the index cannot be snapshotted: graph not complete, CNN
    vectors, unusual digests or hashes; None when ``window`` does not hold (a change meanwhile:
    nothing written, try again once idle)."""
    t0 = time.monotonic()
    window = window or Window(store, index)
    stamp = store.graph_stamp()
    seal = seal_of(store, config, window.txnid)
    if _stored_seal(store) == (seal, _reach_json(index.reach)):  # (vouched for when written: no lock needed)
        logger.info("index snapshot still current (nothing committed since it was written)")
        return True
    with index.lock:
        reason = _unsnapshottable(index, stamp)
        captured = None if reason else _capture(index)
    t_lock = time.monotonic() - t0
    if captured is None:
        remove_snapshot(store)
        logger.info("no index snapshot written: %s", reason)
        return False
    if not window.holds():
        logger.debug("index snapshot not written: the store or the index changed during the capture")
        return None
    arrays = _arrays(*captured, index.reach.names)
    del captured
    if isinstance(arrays, str):
        remove_snapshot(store)
        logger.info("no index snapshot written: %s", arrays)
        return False
    if not window.holds():  # stale already (a commit meanwhile), or the daemon stopping: not written
        logger.debug("index snapshot not written: the store changed while it was built")
        return None
    meta = arrays.pop("meta")
    meta.update(format=FORMAT, seal=seal, reach=_reach_json(index.reach))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    for stale in glob.glob(os.path.join(glob.escape(store.path), TMP_PREFIX + "*")):  # a write cut short (kill -9)
        with contextlib.suppress(OSError):
            os.unlink(stale)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=store.path)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, snapshot_path(store))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    logger.info("index snapshot written", extra={"files": len(arrays["f_cid"]), "contents": len(arrays["c_vec"]),
                                                 "edges": len(arrays["e_a"]), "txnid": window.txnid,
                                                 "lock_s": round(t_lock, 3),
                                                 "seconds": round(time.monotonic() - t0, 2)})
    return True


def _stored_seal(store: Store) -> tuple[Any, Any] | None:
    """The seal and reach of the snapshot on disk (None: none, or unreadable)."""
    try:
        with open(snapshot_path(store), "rb") as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
        return (meta.get("seal"), meta.get("reach")) if isinstance(meta, dict) and meta.get("format") == FORMAT else None
    except Exception:  # noqa: BLE001 - any doubt: write it again
        return None


def _unsnapshottable(index: MatchIndex, stamp: Any) -> str | None:
    if index.matching.cnn is not None:
        return "the index holds CNN vectors"
    if stamp is None or not stamp.complete or Reach(stamp.radii, stamp.cnn) != index.reach:
        return "the stored graph is not complete for the index's reach"
    if not (index.graph_ready and index.derived):
        return "the graph is not complete"
    return None


Captured = tuple[list[bytes], list[Any], list[str], list[FileInfo], list[tuple[bytes, bytes, Any]]]


def _capture(index: MatchIndex) -> Captured:
    """The index's digests, contents, paths, file infos and near edges (under its lock): lists of
    references to objects the index replaces rather than mutates (contents, infos, score tuples)."""
    near = index._near  # noqa: SLF001 - the index's own image, read under its lock
    return (list(index._contents), list(index._contents.values()), list(index.files),  # noqa: SLF001
            list(index.files.values()), [(a, b, s) for a, links in near.items() for b, s in links.items() if a < b])


def _arrays(unsorted: list[bytes], objects: list[Any], paths: list[str], infos: list[FileInfo],
            pairs: list[tuple[bytes, bytes, Any]], score_names: list[str]) -> dict[str, Any] | str:
    """The captured contents, files and near edges as arrays in store order."""
    width = len(unsorted[0]) if unsorted else 16
    if any(len(d) != width for d in unsorted):
        return "digests of several lengths"
    # digest order by numpy (fixed-width bytes compare as the store's keys), ids by binary search
    by_digest = np.frombuffer(b"".join(unsorted), dtype=f"S{width}") if unsorted else np.zeros(0, f"S{width}")
    order = np.argsort(by_digest, kind="stable")
    sorted_digests = by_digest[order]
    if len(sorted_digests) > 1 and not (sorted_digests[1:] > sorted_digests[:-1]).all():
        return "digests that do not sort apart"
    digests = list(map(unsorted.__getitem__, order.tolist()))
    ordered = list(map(objects.__getitem__, order.tolist()))
    del unsorted, objects

    def position(ds: list[bytes]) -> np.ndarray:
        return np.searchsorted(sorted_digests, np.frombuffer(b"".join(ds), dtype=f"S{width}")) if ds else (
            np.zeros(0, dtype=np.int64))

    layouts: dict[tuple[str, ...], int] = {}
    names = sorted({m for c in ordered for m in c.hashes})
    k = len(digests)
    c_layout = np.fromiter((layouts.setdefault(tuple(c.hashes), len(layouts)) for c in ordered), dtype=np.int32,
                           count=k)
    c_vec = np.fromiter((c.has_vector for c in ordered), dtype=bool, count=k)
    c_hash = np.zeros((k, len(names)), dtype=np.uint64)
    try:  # (values outside uint64 raise OverflowError)
        for j, m in enumerate(names):
            c_hash[:, j] = np.fromiter((c.hashes.get(m, 0) for c in ordered), dtype=np.uint64, count=k)
    except (OverflowError, TypeError, ValueError):
        return "hash values outside 64 bits"
    del ordered
    c_wh = np.zeros((k, 2), dtype=np.int64)
    fs_enc, fs_err = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    encoded = [p.encode(fs_enc, fs_err) for p in paths]
    keys = list(map(file_key, encoded))  # the store's order: by key (a long path's is its hash)
    by_key = sorted(range(len(keys)), key=keys.__getitem__)  # (nearly sorted already: loaded so)
    del keys, paths
    infos = list(map(infos.__getitem__, by_key))
    n = len(infos)
    f_cid = position([info.digest for info in infos]).astype(np.int64)
    f_size = np.fromiter((info.size for info in infos), dtype=np.int64, count=n)
    f_mtime = np.fromiter((info.mtime_ns for info in infos), dtype=np.int64, count=n)
    c_wh[f_cid, 0] = np.fromiter((info.width for info in infos), dtype=np.int64, count=n)
    c_wh[f_cid, 1] = np.fromiter((info.height for info in infos), dtype=np.int64, count=n)
    blob = b"\0".join(map(encoded.__getitem__, by_key))
    del infos, encoded, by_key
    pairs.sort(key=lambda t: (t[0], t[1]))
    e_s = np.full((len(pairs), len(score_names)), np.nan, dtype=np.float64)
    for i, (_, _, scores) in enumerate(pairs):
        for j, s in enumerate(scores):
            if s is not None:
                e_s[i, j] = s
    return {
        "meta": {"names": names, "layouts": [list(keys) for keys in layouts], "digest_len": width,
                 "scores": score_names},
        "c_digest": np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(k, width),
        "c_wh": c_wh, "c_hash": c_hash, "c_layout": c_layout, "c_vec": c_vec,
        "f_path": np.frombuffer(blob, dtype=np.uint8), "f_cid": f_cid, "f_size": f_size, "f_mtime": f_mtime,
        "e_a": position([a for a, _, _ in pairs]).astype(np.int64),
        "e_b": position([b for _, b, _ in pairs]).astype(np.int64),
        "e_s": e_s,
    }


def adopt_snapshot(store: Store, config: Config, reach: Reach) -> tuple[MatchIndex, int] | None:
    """The index of ``store`` under ``config`` with the stored edges linked (and their number),
    from the snapshot when its seal matches (else None: the caller loads from the store). The caller then calls
    :meth:`MatchIndex.build_graph` as after :func:`~dedupd.daemon.loader.load_edges`."""
    path = snapshot_path(store)
    if not os.path.exists(path):
        return None
    t0 = time.monotonic()
    stamp = store.graph_stamp()
    if stamp is None or not stamp.complete or Reach(stamp.radii, stamp.cnn) != reach or config.cnn is not None:
        logger.info("index snapshot not adopted: the stored graph is not complete for this config")
        return None
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # (np.load may leave a path open)
            meta = json.loads(bytes(z["meta"]).decode())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise SnapshotError("unknown format")
            seal, want = meta.get("seal"), seal_of(store, config)
            if not isinstance(seal, dict) or _unsealed(seal) != _unsealed(want) or meta.get("reach") != _reach_json(reach):
                logger.info("index snapshot not adopted: the store, config or dedupd changed since it was written")
                return None
            changes: JournalChanges | None = None
            if seal["txnid"] != want["txnid"]:  # commits since: replayed when the journal tells them
                limit = max(REPLAY_MIN, int(len(z["f_cid"]) * REPLAY_FRACTION))
                told = store.journal_since(int(seal["txnid"]), limit)
                if isinstance(told, str):
                    logger.info("index snapshot not adopted: commits since it, and %s", told)
                    return None
                changes = told
            with gc_paused():  # millions of new objects: no collection walking them meanwhile
                index, edges = _build(z, meta, config, reach)
                t_replay = time.monotonic()
                if changes is not None:
                    replayed = replay(store, config, index, changes)
                    edges = index.near_edge_count()
                    # reports built for the snapshot's generation need these paths' groups only
                    index.replayed_from = int(seal["txnid"])
                    index.touch_paths(replayed, only=True)
                t_replay = time.monotonic() - t_replay
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the store still loads
        logger.warning("index snapshot %s unusable (%s): loading from the store instead", path, exc)
        return None
    index.mark_derived(stamp.cursor, stamp.complete)
    store.trim_journal(int(seal["txnid"]))  # (the changes up to the snapshot are in it)
    release_memory(None)  # the C heap's pages of the columns' temporaries back to the kernel
    logger.info("index snapshot adopted", extra={
        "files": len(index.files), "contents": index.content_count, "edges": edges, "txnid": seal["txnid"],
        "replayed": 0 if changes is None else changes.entries, "rebuilt": 0 if changes is None else len(replayed),
        "replay_s": round(t_replay, 3), "seconds": round(time.monotonic() - t0, 2)})
    return index, edges


def _unsealed(seal: dict[str, Any]) -> dict[str, Any]:
    """A seal without its transaction id (commits since are told by the journal)."""
    return {k: v for k, v in seal.items() if k != "txnid"}


def replay(store: Store, config: Config, index: MatchIndex, changes: JournalChanges) -> set[str]:
    """Bring ``index`` (the store's load as of an earlier commit) up to the store's current state
    from the journal's ``changes``; returns the paths it removed or added (whose groups may differ).

    Each content a change touches (a noted digest; a noted path's content before and now) is
    rebuilt as a load would build it: its indexed paths removed (with its edges), then its
    stored files in key order (state ``ok``, under a root) added with its stored encoding, then
    its stored edges linked (checked against the hashes, as a load does)."""
    touched = set(changes.digests)
    for path in changes.paths:
        info = index.files.get(path)
        if info is not None:
            touched.add(info.digest)
        record = store.get_file(path)
        if record is not None and record.digest is not None:
            touched.add(record.digest)
    paths: set[str] = set()
    for digest in touched:
        for path in index.paths_of(digest):
            index.remove(path)
            paths.add(path)
    present = []
    for digest in sorted(touched):
        encoding = store.get_encoding(digest)
        if encoding is None:
            continue
        vector = None if encoding.cnn_vector is None else np.frombuffer(encoding.cnn_vector, dtype=np.float32)
        for path in store.files_with_digest(digest):
            record = store.get_file(path)
            if record is None or record.state != "ok" or record.digest != digest or root_of(path, config) is None:
                continue
            index.add(path, FileInfo(digest, record.size, record.mtime_ns, encoding.width, encoding.height),
                      encoding.hashes, vector, edges=())
            paths.add(path)
        if index.has(digest):
            present.append(digest)
    for digest in present:
        index.load_edges(store.edges_of(digest))
    return paths


def _build(z: Any, meta: dict[str, Any], config: Config, reach: Reach) -> tuple[MatchIndex, int]:
    """The index from the snapshot's arrays (every array checked for shape and range first)."""
    names, layouts, width = meta["names"], [tuple(x) for x in meta["layouts"]], int(meta["digest_len"])
    if meta["scores"] != reach.names or any(set(keys) - set(names) for keys in layouts):
        raise SnapshotError("names do not match")
    digest_rows = z["c_digest"]
    k = len(digest_rows)
    c_wh, c_hash, c_layout, c_vec = z["c_wh"], z["c_hash"], z["c_layout"], z["c_vec"]
    f_path, f_cid, f_size, f_mtime = z["f_path"], z["f_cid"], z["f_size"], z["f_mtime"]
    e_a, e_b, e_s = z["e_a"], z["e_b"], z["e_s"]
    n, e = len(f_cid), len(e_a)
    shapes_ok = (digest_rows.shape == (k, width) and c_wh.shape == (k, 2) and c_hash.shape == (k, len(names))
                 and c_layout.shape == (k,) and c_vec.shape == (k,) and f_size.shape == (n,)
                 and f_mtime.shape == (n,) and e_b.shape == (e,) and e_s.shape == (e, len(reach.names)))
    if not shapes_ok or (k and not (0 <= c_layout.min() and c_layout.max() < len(layouts))):
        raise SnapshotError("arrays of inconsistent shapes")
    if (n and not (0 <= f_cid.min() and f_cid.max() < k)) or (e and not (
            0 <= min(e_a.min(), e_b.min()) and max(e_a.max(), e_b.max()) < k)):
        raise SnapshotError("ids out of range")
    raw = digest_rows.tobytes()
    digests = [raw[i:i + width] for i in range(0, k * width, width)]
    del raw
    hashes: list[dict[str, int]] = [{}] * k
    col = {m: j for j, m in enumerate(names)}
    for lid, keys in enumerate(layouts):
        rows = np.flatnonzero(c_layout == lid)
        values = [c_hash[rows, col[m]].tolist() for m in keys]
        for r, vals in zip(rows.tolist(), zip(*values, strict=True) if keys else repeat((), len(rows)),
                           strict=True):
            hashes[r] = dict(zip(keys, vals, strict=True))
    fs_enc, fs_err = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    paths = f_path.tobytes().decode(fs_enc, fs_err).split("\0") if n else []
    if len(paths) != n:
        raise SnapshotError("paths do not match the files")
    tree_columns = {}
    for m in names:
        ids = np.flatnonzero(np.isin(c_layout, [lid for lid, keys in enumerate(layouts) if m in keys]))
        tree_columns[m] = (ids, c_hash[ids, col[m]])
    index = MatchIndex(matching_of(config), reach)
    try:
        index.load_columns(digests, hashes, c_vec.tolist(), tree_columns, (c_wh[:, 0].tolist(), c_wh[:, 1].tolist()),
                           (paths, f_cid, f_size.tolist(), f_mtime.tolist()))
    except ValueError as exc:
        raise SnapshotError(str(exc)) from exc
    hashed = [m != "cnn" for m in reach.names]
    # one tuple per distinct row of scores (most edges share a few): NaN (None) as a sentinel first
    rows, which = np.unique(np.where(np.isnan(e_s), -np.inf, e_s), axis=0, return_inverse=True)
    table: list[Any] = rows.tolist()
    distinct = [tuple(None if v == -np.inf else (int(v) if h else v) for v, h in zip(row, hashed, strict=True))
                for row in table]
    a_list, b_list, s_list = e_a.tolist(), e_b.tolist(), which.reshape(-1).tolist()
    linked = 0
    for lo in range(0, e, EDGE_CHUNK):
        hi = min(e, lo + EDGE_CHUNK)
        linked += index.link_loaded(zip(map(digests.__getitem__, a_list[lo:hi]), map(digests.__getitem__, b_list[lo:hi]),
                                        map(distinct.__getitem__, s_list[lo:hi])))
    return index, linked

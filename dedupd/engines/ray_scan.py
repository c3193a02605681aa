"""``dedupd scan --engine ray``: the bulk of the work on a Ray cluster, the store written here.

1. **Encode on Ray.** The driver walks the roots (``stat`` only) and sends every regular file that
   is new or changed since the store's record, in batches of ``batch`` files, to Ray tasks. A task
   reads and digests each file, checks it did not change meanwhile, decodes each distinct content
   once and computes every configured encoding (:func:`dedupd.daemon.encoder.encode_many`: the
   hashes, and the CNN in batches of 8). Results stream back as tasks finish and this process, the
   store's single writer, records them in LMDB transactions of up to ``WRITE_BATCH`` files, keyed by
   path and content digest: a task Ray runs again after a worker or node died writes the same
   entries again. The file records use the driver's own ``stat`` (a node may see another
   ``st_dev`` for the same shared file system), so the daemon later finds every file unchanged.
2. **Finish locally.** Then the ordinary one-shot scan (:meth:`Daemon.scan_once`) runs on the same
   store: its walk finds the encoded files unchanged and deals, exactly as a local scan does, with
   everything phase 1 left (unreadable or odd entries, files that changed mid-read, files gone); it
   derives the duplicate graph into the store's edges table (one multi-index hash query per content:
   sublinear, so not worth shipping to the cluster; :mod:`.ray_pairs` serves the library's
   ``engine="ray"`` all-pairs search) and writes the reports.

A later ``dedupd run`` on that store starts with everything indexed and decodes nothing.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat as stat_mod
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from dedupd.daemon.config import Config
from dedupd.daemon.encoder import EncodeResult, EncodeSpec, encode_many, file_digest
from dedupd.daemon.pipeline import encode_spec, is_utf8
from dedupd.daemon.store import EncodingRecord, FileRecord, Store
from dedupd.daemon.walk import walk_root
from dedupd.engines.ray_runtime import TASK_RETRIES, Rate, connected, stream
from dedupd.errors import DedupdError
from dedupd.reports.files import EventLog

logger = logging.getLogger(__name__)

#: files per Ray task (each task costs a few ms of scheduling: batches keep that small per file)
BATCH = 64
#: files per store transaction (each commit is an fsync)
WRITE_BATCH = 512
WRITE_INTERVAL_S = 1.0

#: one file's answer from a task: (path, digest or None, why it was not read or None, encoding result)
Row = tuple[str, bytes | None, str | None, EncodeResult | None]


#: a file as the driver's walk saw it: (path, size, mtime_ns, dev, inode)
Item = tuple[str, int, int, int, int]


#: a task's reason for a file its node cannot find
NOT_FOUND = "cannot read: not found on this node"


def encode_files(items: list[Item], spec: EncodeSpec) -> tuple[str, list[Row]]:
    """Ray task: read, digest and encode the walk's items; returns ``(node id, rows)`` in item order.

    Each distinct content is decoded once; a file that cannot be read, or whose size or mtime is
    no longer what the driver saw, gets a reason instead (the driver leaves it to the local pass).
    """
    rows: list[Row] = []
    first: dict[bytes, str] = {}
    for path, size, mtime_ns, *_ in items:
        try:
            digest = file_digest(path)
            st = os.stat(path)
        except OSError as exc:
            rows.append((path, None, NOT_FOUND if exc.errno == errno.ENOENT else f"cannot read: {exc.strerror or exc}",
                         None))
            continue
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            rows.append((path, None, "changed while it was read", None))
            continue
        rows.append((path, digest, None, None))
        first.setdefault(digest, path)
    unit = 8 if spec.cnn_model else 1  # decoded images of one unit are held together (the CNN batch)
    todo = list(first.items())
    results: dict[bytes, EncodeResult] = {}
    for k in range(0, len(todo), unit):
        chunk = todo[k:k + unit]
        results.update(zip((d for d, _ in chunk), encode_many([p for _, p in chunk], spec)))
    return _node_id(), [(p, d, why, results.get(d) if d is not None else None) for p, d, why, _ in rows]


def _node_id() -> str:
    """The Ray node this runs on ("local" outside Ray: never starts one)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return "local"
    return ray.get_runtime_context().get_node_id()


@dataclass
class RayStats:
    """What phase 1 did, for the scan's summary and the benchmark."""

    walked: int = 0
    sent: int = 0  # files sent to Ray tasks
    written: int = 0  # of those, recorded in the store
    decoded: int = 0  # files that brought a new encoding (or a decode failure) to the store
    reused: int = 0  # files whose content was already encoded
    unreadable: int = 0
    redundant: int = 0  # contents decoded on Ray that another task or the store already had
    left: int = 0  # left to the local pass (unreadable bytes, changed while read, odd entries)
    unseen: int = 0  # of those, files a node could not find although this machine sees them
    tasks: int = 0
    nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> tasks it ran
    encode_s: float = 0.0
    files_per_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidates(config: Config, store: Store, stats: RayStats) -> Iterator[Item]:
    """Regular files that are new or changed, or whose encoding is stale (what the pipeline would
    decode), as the walk finds them (nothing is held for the whole tree)."""
    methods, hash_params, cnn_id = tuple(config.hash_keys()), config.hash_params_id(), config.cnn_model_id()
    for root in config.roots:
        for found in walk_root(root, config, on_dir_error=lambda d, e: logger.warning("cannot list %s: %s", d, e)):
            stats.walked += 1
            st = found.st
            if st is None or found.error or not stat_mod.S_ISREG(st.st_mode) or not is_utf8(found.path):
                continue  # the local pass records these as the pipeline does
            rec = store.get_file(found.path)
            if rec is not None and rec.same_stat(st):
                if rec.state != "ok":
                    continue
                enc = store.get_encoding(rec.digest) if rec.digest else None
                if enc is not None and not any(enc.stale(methods, hash_params, cnn_id)):
                    continue
            stats.sent += 1
            yield found.path, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino


class _Writer:
    """Turns task rows into store records, written in batches (the store's single writer)."""

    def __init__(self, config: Config, store: Store, stats: RayStats) -> None:
        self.store, self.stats = store, stats
        # the unreadable files go to events.jsonl as a local scan's do (the scan names them from there)
        self.events = EventLog(os.path.join(config.report_dir, "events.jsonl"), config.report_mode)
        self.spec_methods = tuple(config.hash_keys())
        self.hash_params, self.cnn_id, self.max_pixels = config.hash_params_id(), config.cnn_model_id(), config.max_pixels
        self.encoded: set[bytes] = set()  # digests this run has written an encoding for
        self.pending: list[tuple[str, FileRecord, EncodingRecord | None]] = []
        self.flushed_at = time.monotonic()

    def _fresh(self, digest: bytes) -> EncodingRecord | None:
        enc = self.store.get_encoding(digest)
        if enc is None or any(enc.stale(self.spec_methods, self.hash_params, self.cnn_id)):
            return None
        return enc

    def add(self, items: list[Item], rows: list[Row]) -> None:
        """Record one task's rows (flushing to the store when the batch is full or old enough)."""
        s = self.stats
        decoded_here = {d: p for p, d, _, res in reversed(rows) if res is not None}  # digest -> its first path
        for item, (path, digest, why, res) in zip(items, rows):
            _, size, mtime_ns, dev, inode = item
            if digest is None or not _unchanged(item):
                # the local pass looks at it again, with the pipeline's rules and reasons
                logger.debug("left to the local pass: %s (%s)", path, why or "changed since the walk")
                s.left += 1
                s.unseen += why == NOT_FOUND and os.path.exists(path)
                continue
            known = None if digest in self.encoded else self._fresh(digest)
            if digest in self.encoded or known is not None:
                if known is not None and known.width * known.height > self.max_pixels:
                    s.left += 1  # an encoding made under a higher limit: refused as the pipeline words it
                    continue
                s.reused += 1
                s.redundant += decoded_here.get(digest) == path and digest not in self.encoded
                self.pending.append((path, FileRecord(size, mtime_ns, dev, inode, digest, encoded_at=time.time()), None))
            elif res is not None and res.ok:
                s.decoded += 1
                enc = EncodingRecord(res.width, res.height, res.format, res.hashes or {}, self.hash_params,
                                     res.vector, self.cnn_id if res.vector is not None else None)
                self.encoded.add(digest)
                self.pending.append((path, FileRecord(size, mtime_ns, dev, inode, digest, encoded_at=time.time()), enc))
            elif res is not None:
                s.decoded += 1
                s.unreadable += 1
                reason = res.reason or "unknown decode error"
                logger.warning("unreadable image %s: %s", path, reason, extra={"path": path, "reason": reason})
                self.events.append("unreadable", path=path, reason=reason)
                self.pending.append((path, FileRecord(size, mtime_ns, dev, inode, digest, "unreadable", reason,
                                                      time.time()), None))
            else:
                s.left += 1
                continue
            s.written += 1
        if len(self.pending) >= WRITE_BATCH or time.monotonic() - self.flushed_at >= WRITE_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.store.put_files(self.pending)
            self.pending = []
        self.flushed_at = time.monotonic()


def _unchanged(item: Item) -> bool:
    """The file still has the walk's stat (dev, inode, size, mtime) on the driver."""
    path, size, mtime_ns, dev, inode = item
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) == (dev, inode, size, mtime_ns)


def _batches(items: Iterator[Item], size: int, spec: EncodeSpec, rate: Rate) -> Iterator[tuple[Any, ...]]:
    """Tasks' arguments, ``size`` items each, as the walk goes (``rate`` learns the total at its end)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        rate.total += len(chunk)
        yield chunk, spec
    rate.walking = False


def encode_on_ray(ray: Any, config: Config, store: Store, *, batch: int = BATCH,
                  progress: Callable[[Rate], None] | None = None) -> RayStats:
    """Phase 1: encode every new or changed file of ``config``'s roots on Ray into ``store``."""
    stats = RayStats()
    writer = _Writer(config, store, stats)
    rate = Rate(0, walking=True)
    shown = 0.0
    batches = _batches(candidates(config, store, stats), max(1, batch), encode_spec(config), rate)
    try:
        for (items, _), answer in stream(ray, encode_files, batches, return_errors=True):
            rate.advance(len(items))
            if isinstance(answer, BaseException):
                cause = getattr(answer, "cause", None)  # a RayTaskError carries the task's own exception
                if isinstance(cause, DedupdError):
                    raise cause from None  # e.g. the CNN model is missing on a node: a setup problem
                # its node kept dying (or a codec crashed its worker each time): decoded locally instead
                logger.warning("a Ray task failed after %d retries (%s); its %d files are left to the local pass",
                               TASK_RETRIES, type(answer).__name__, len(items))
                stats.left += len(items)
                continue
            node, rows = answer
            stats.tasks += 1
            stats.nodes[node] = stats.nodes.get(node, 0) + 1
            writer.add(items, rows)
            if progress is not None and time.monotonic() - shown >= 0.5:
                shown = time.monotonic()
                progress(rate)
    finally:
        writer.flush()
    if stats.unseen:
        logger.warning("%d of the %d files sent to Ray were not found on the node that ran their task, although "
                       "this machine sees them: they are decoded here instead. The photos must be on storage "
                       "every node mounts at the same path as on this machine", stats.unseen, stats.sent)
    if stats.left == 0:
        # every walked file now has this config's encodings (or is unreadable): the local pass need
        # not re-check each one (as the daemon records it after a complete refresh walk)
        store.set_encoders(config.hash_keys(), config.cnn_model_id(), hash_params=config.hash_params_id())
    if progress is not None:
        progress(rate)
    stats.encode_s = round(time.monotonic() - rate.t0, 3)
    stats.files_per_s = round(rate.per_s, 2)
    logger.info("encoded on Ray", extra={k: v for k, v in stats.as_dict().items() if k != "nodes"})
    return stats


def scan_on_ray(config: Config, *, address: str | None, batch: int = BATCH,
                progress: Callable[[str], None] | None = None,
                daemon_hook: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """``dedupd scan --engine ray``: phase 1 on Ray, then the local one-shot scan; returns its status
    with the Ray counters folded in (``engine`` holds them apart too).

    Raises:
        EngineUnavailable: Ray is not installed, or nothing answers at ``address``.
        StoreLockedError: a daemon holds the store.
    """
    from dedupd.daemon.service import Daemon

    store = Store.open(config.store_dir, lock=True)  # a daemon holding it: said before Ray starts
    try:
        with connected(address, num_cpus=config.workers if not address else None) as ray:
            try:
                stats = encode_on_ray(ray, config, store, batch=batch,
                                      progress=(lambda r: progress(r.line())) if progress else None)
            finally:
                store.close()  # the local pass opens it again (one LMDB environment per process)
            daemon = Daemon(config, serve=False, watch=False)
            if daemon_hook is not None:
                daemon_hook(daemon)
            status = daemon.scan_once(lambda s: progress(f"finishing: {s['files']} indexed, {s['queued']} queued")
                                      if progress else None)
            edges = edge_list(daemon)
    finally:
        store.close()
    status["decoded"] += stats.decoded
    status["reused"] += stats.reused
    status["unreadable"] += stats.unreadable
    status["reconcile_progress"]["queued"] = status["reconcile_progress"].get("queued", 0) + stats.written
    status["engine"] = {"name": "ray", "address": address or "local", **stats.as_dict(), "edges": len(edges)}
    return status


def edge_list(daemon: Any) -> list[tuple[bytes, bytes, str, float]]:
    """The duplicate graph the scan built, as ``(digest_a, digest_b, method, score)`` (the one place
    that takes the Ray-built edges out of the scan)."""
    return daemon.index.edges() if hasattr(daemon, "index") else []

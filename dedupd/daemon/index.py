"""The daemon's in-memory match state: hash columns, the embedding matrix and the duplicate graph.

Everything is keyed by *content digest* first: byte-identical copies share one tree entry and one
vector, and are duplicates of each other by definition. Two graphs link digests:

- ``near``: every pair within the *reach* (a Hamming radius per hash method, a minimum CNN
  similarity), with the pair's scores. This is what the store persists (see
  :class:`~dedupd.daemon.store.GraphStamp`); the reach is at least the configured thresholds.
- ``graph``: the pairs that match under the configured rule (``Evidence`` per pair), a filter of
  ``near``. Reports and queries read it and never rescan.

Both are kept up to date on every add/remove. A threshold change within the reach refilters
``near`` (O(edges)); a wider reach or other methods re-derive it (:meth:`MatchIndex.build_graph`,
resumable through its ``persist`` hook). The index is a cache of the store: it can always be
rebuilt from it, and is only updated after the store commit. One ``RLock`` guards it; readers
(the socket server) take it briefly.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dedupd.core import policy as match_policy
from dedupd.core import variants as hash_variants
from dedupd.core.hashindex import IdHashIndex, IdSlots
from dedupd.core.policy import EXACT as EXACT  # re-exported: callers import the match types from here
from dedupd.core.policy import EXACT_EVIDENCE, Evidence, Matching, closeness, pair_evidence, score_evidence
from dedupd.core.vectors import VectorIndex
from dedupd.daemon.slices import drop_in_steps, keys_of

#: one edge: two digests and their scores in :attr:`Reach.names` order (None: a side lacks the method)
Edge = tuple[bytes, bytes, Sequence[float | None]]
#: a derivation step holds the index lock about this long before letting others in
STEP_S = 0.02
#: a derivation writes its edges and progress to the store this often (one fsync each)
PERSIST_S = 1.0
#: distinct score tuples whose evidence an index remembers (per rule)
EVIDENCE_MEMO = 1 << 16
#: radius of a check score (``"phash@agree"``): stored with each edge, never searched nor reaching
CHECK = -1


@dataclass(frozen=True)
class Reach:
    """How far ``near`` reaches: max Hamming distance per hash method, min CNN similarity."""

    radii: tuple[tuple[str, int], ...]
    cnn: float | None = None

    @classmethod
    def of(cls, matching: Matching, margin: int = 0, cnn_margin: float = 0.0) -> Reach:
        """The reach of ``matching``'s thresholds widened by ``margin`` bits (at most 64) and
        ``cnn_margin`` of similarity."""
        radii = tuple(sorted([*((_score_name(m, option), min(64, limit + margin))
                                for m in matching.hashes for option, limit in matching.limits(m)),
                              *((name, CHECK) for name in matching.checks())]))
        return cls(radii, None if matching.cnn is None else max(-1.0, round(matching.cnn - cnn_margin, 6)))

    def with_checks(self, matching: Matching) -> Reach | None:
        """This reach plus the check scores ``matching`` reads that it lacks, when that is all it
        lacks to cover ``matching`` (edges stored before a check existed: its score is computed
        from the hashes, no search needed); None otherwise, or when nothing is missing."""
        have = dict(self.radii)
        missing = [name for name in matching.checks() if name not in have]
        if not missing:
            return None
        grown = Reach(tuple(sorted([*self.radii, *((name, CHECK) for name in missing)])), self.cnn)
        return grown if grown.covers(matching) else None

    @property
    def names(self) -> list[str]:
        """Order of the scores in an edge: hash methods and their variant families (``"phash@crop"``:
        the smallest distance through a crop variant), sorted, then ``"cnn"``."""
        return [m for m, _ in self.radii] + (["cnn"] if self.cnn is not None else [])

    def covers(self, matching: Matching) -> bool:
        """True when every pair that can match under ``matching`` is within this reach (same
        methods, each threshold within its radius): a switch to it is a filter of ``near``."""
        radii = dict(self.radii)
        limits = {_score_name(m, option): limit for m in matching.hashes for option, limit in matching.limits(m)}
        limits.update(dict.fromkeys(matching.checks(), CHECK))
        return (radii.keys() == limits.keys() and all(t <= radii[k] for k, t in limits.items())
                and (self.cnn is None) == (matching.cnn is None)
                and (self.cnn is None or matching.cnn is None or self.cnn <= matching.cnn))


@dataclass(slots=True)
class FileInfo:
    """What the index keeps per path (for the keep-rule and reports)."""

    digest: bytes
    size: int
    mtime_ns: int
    width: int
    height: int


@dataclass(slots=True)
class _Content:
    hashes: dict[str, int]
    has_vector: bool
    #: a tuple while small (48 bytes for one path against 216 for a set: most contents have one
    #: path), a set from :data:`_SET_FROM` paths on (see :func:`_with`, :func:`_without`)
    paths: tuple[str, ...] | set[str] = ()
    #: the content's id in the hash columns (:class:`IdHashIndex` keys; see ``MatchIndex._cids``)
    cid: int = -1


_SET_FROM = 8


def _with(paths: tuple[str, ...] | set[str], path: str) -> tuple[str, ...] | set[str]:
    """``paths`` with ``path`` added (the set itself when it is one)."""
    if type(paths) is set:
        paths.add(path)
        return paths
    if path in paths:
        return paths
    return (*paths, path) if len(paths) < _SET_FROM - 1 else {*paths, path}


def _without(paths: tuple[str, ...] | set[str], path: str) -> tuple[str, ...] | set[str]:
    """``paths`` without ``path``."""
    if type(paths) is set:
        paths.discard(path)
        return paths
    return tuple(p for p in paths if p != path) if path in paths else paths


class MatchIndex:
    """Incremental duplicate graph over indexed files.

    Args:
        matching: the duplicate rule.
        reach: how far ``near`` (and the store's edges) reach; default: exactly the thresholds.
    """

    def __init__(self, matching: Matching, reach: Reach | None = None) -> None:
        self.lock = threading.RLock()
        self.matching = matching
        self.reach = reach if reach is not None and reach.covers(matching) else Reach.of(matching)
        self.files: dict[str, FileInfo] = {}
        self._contents: dict[bytes, _Content] = {}
        self._near: dict[bytes, dict[bytes, tuple]] = {}  # sparse: only digests with edges
        self._graph: dict[bytes, dict[bytes, Evidence]] = {}  # sparse, the matching subset of _near
        self._building: dict[bytes, dict[bytes, Evidence]] | None = None  # a refilter's new graph
        self._trees: dict[str, IdHashIndex] = {k: IdHashIndex() for k in _columns(matching)}
        # content ids: the hash columns hold ints, not a dict per column (a million contents:
        # ~250 bytes each saved with four columns); freed ids are reused
        self._cids: IdSlots[bytes] = IdSlots()  # content id → digest
        self._vectors: VectorIndex[bytes] | None = None
        self.generation = 0  # bumped on every change (readers cache derived views on it)
        self.graph_ready = True  # False while build_graph() still has to link (load, refilter, derive)
        self._graph_epoch = 0  # bumped when the reach or the rule changes: a running build stops
        self._refilter = False  # graph must be refiltered from near (thresholds changed within reach)
        self.derived_to: bytes | None = None  # derivation cursor: last digest whose near edges are known
        self.derived = True  # near is complete (no derivation due)
        # paths whose group may have changed since take_touched() (for incremental reports)
        self._touched: set[str] = set()
        self._touched_all = True
        #: the store generation this index was loaded as of when a start replayed the commits since
        #: it (:func:`dedupd.daemon.snapshot.replay`); the replayed paths are then its touched paths
        self.replayed_from: int | None = None
        self._evidence: tuple[Matching, Reach, dict[tuple, Evidence | None]] = (matching, self.reach, {})

    # -- change tracking ----------------------------------------------------------------------

    def _new_content(self, digest: bytes, hashes: dict[str, int], has_vector: bool) -> _Content:
        """A content with a fresh id (not yet in the columns), registered in ``_contents``."""
        content = self._contents[digest] = _Content(hashes, has_vector, (), self._cids.take(digest))
        return content

    def _search(self, column: str, value: int, radius: int) -> list[bytes]:
        """Digests whose ``column`` hash is within ``radius`` of ``value``, in insertion order."""
        digest_of = self._cids.keys
        return [digest_of[i] for i in self._trees[column].search_arrays(value, radius)[0].tolist()]

    def _touch(self, digest: bytes) -> None:
        if not self._touched_all:
            content = self._contents.get(digest)
            if content is not None:
                self._touched.update(content.paths)

    def take_touched(self) -> tuple[bool, set[str]]:
        """``(everything, paths)`` whose duplicate group may have changed since the last call:
        everything (a load, a refilter) or the given paths (what reports must recompute)."""
        with self.lock:
            out = (self._touched_all, self._touched)
            self._touched, self._touched_all = set(), False
            return out

    def touch_paths(self, paths: Iterable[str], *, only: bool = False) -> None:
        """Mark ``paths`` touched (a taken change given back); ``only``: and nothing else (a load
        whose only changes since an earlier state are these paths, see :attr:`replayed_from`)."""
        with self.lock:
            if only:
                self._touched_all, self._touched = False, set(paths)
            elif not self._touched_all:
                self._touched.update(paths)

    def has_touched(self) -> bool:
        """Whether :meth:`take_touched` would return a change (without taking it)."""
        with self.lock:
            return self._touched_all or bool(self._touched)

    def _touch_all(self) -> None:
        self._touched_all = True
        self._touched = set()

    # -- scores and evidence ------------------------------------------------------------------

    def _scores(self, a: Mapping[str, int], b: Mapping[str, int], sim: float | None) -> tuple | None:
        """The pair's scores in reach order, or None when the pair is beyond the reach."""
        out: list[float | None] = []
        within = False
        for name, radius in self.reach.radii:
            d = _hash_score(name, a, b)
            within = within or (d is not None and d <= radius)
            out.append(d)
        if self.reach.cnn is not None:
            out.append(sim)
            within = within or (sim is not None and sim >= self.reach.cnn)
        return tuple(out) if within else None

    def _match(self, scores: Sequence[float | None]) -> Evidence | None:
        """The evidence of an edge's scores. Hash distances repeat (small ints), so each distinct
        score tuple is decided once per rule and its (frozen) evidence shared by every edge that has
        it: at 1M files, linking 210k stored edges took ~2.5 of its ~4 s deciding, and each edge
        held its own evidence (~0.5 KB)."""
        matching, reach = self.matching, self.reach
        memo = self._evidence
        if memo[0] is not matching or memo[1] is not reach:  # a new rule: a new memo
            memo = self._evidence = (matching, reach, {})
        key = tuple(scores)
        try:
            return memo[2][key]
        except KeyError:
            ev = score_evidence(matching, dict(zip(reach.names, scores)))
            if len(memo[2]) < EVIDENCE_MEMO:  # CNN similarities rarely repeat: bounded
                memo[2][key] = ev
            return ev

    def _near_candidates(self, hashes: Mapping[str, int], vector: np.ndarray | None) -> dict[bytes, float | None]:
        """Digests within the reach of a content (from trees and vectors), with the CNN similarity."""
        out: dict[bytes, float | None] = {}
        for name, radius in self.reach.radii:
            if radius == CHECK:
                continue
            for qkey, column in _comparisons(name):
                if qkey in hashes and column in self._trees:
                    for key in self._search(column, hashes[qkey], radius):
                        out[key] = None
        if vector is not None and self._vectors is not None and len(self._vectors):
            if self.reach.cnn is not None:
                out.update(self._vectors.search(vector, self.reach.cnn))
            unit = self._unit(vector)
            for key, s in out.items():  # hash candidates: their similarity too (for the scores)
                if s is None and key in self._vectors:
                    out[key] = float(unit @ self._vectors.get(key))
        return out

    def _candidates(self, hashes: Mapping[str, int], vector: np.ndarray | None) -> dict[bytes, float | None]:
        """Digests that may match under the rule (from trees and vectors), with their CNN similarity."""
        out: dict[bytes, float | None] = {}
        for method in self.matching.hashes:
            for qkey, column, radius in _lookups(self.matching, method):
                if qkey in hashes:
                    for key in self._search(column, hashes[qkey], radius):
                        out.setdefault(key, None)
        if vector is not None and self._vectors is not None and len(self._vectors):
            assert self.matching.cnn is not None
            thr = self.matching.cnn if self.matching.mode == "any" else -1.0
            hits = dict(self._vectors.search(vector, thr if out or self.matching.mode == "any" else self.matching.cnn))
            if self.matching.mode == "any":
                for key, s in hits.items():
                    out[key] = s
            else:
                for key in out:
                    out[key] = hits.get(key, None)
                if not self.matching.hashes:
                    out = dict(hits)
        return out

    # -- mutation ---------------------------------------------------------------------------

    def plan(self, new: Mapping[bytes, tuple[Mapping[str, int], np.ndarray | None]]) -> list[Edge]:
        """The near edges that contents about to be (re)added bring: each against the indexed
        contents (not its own old version, nor the other new ones' old versions) and among
        themselves. The pipeline writes them with the encodings, then passes them to :meth:`add`.

        Hash-only reaches are scored in numpy, a batch at once (:meth:`_plan_arrays`); with CNN
        similarities, pair by pair (:meth:`_plan_pairs`). Same edges, same order."""
        with self.lock:
            if self.reach.cnn is None and all(k in self._trees for k in _score_keys(self.reach.radii)):
                return self._plan_arrays(new)
            return self._plan_pairs(new)

    def _plan_pairs(self, new: Mapping[bytes, tuple[Mapping[str, int], np.ndarray | None]]) -> list[Edge]:
        """:meth:`plan`, one :meth:`_scores` call per pair (the reference the array path is tested against)."""
        edges: list[Edge] = []
        with self.lock:
            vecs = {d: None if v is None else self._unit(v) for d, (_, v) in new.items()}
            for d, (hashes, _) in new.items():
                for other, sim in self._near_candidates(hashes, vecs[d]).items():
                    if other in new:
                        continue
                    sc = self._scores(hashes, self._contents[other].hashes, sim)
                    if sc is not None:
                        edges.append((d, other, sc))
            keys = list(new)
            for i, a in enumerate(keys):
                for b in keys[i + 1:]:
                    va, vb = vecs[a], vecs[b]
                    sim = float(va @ vb) if va is not None and vb is not None else None
                    sc = self._scores(new[a][0], new[b][0], sim)
                    if sc is not None:
                        edges.append((a, b, sc))
        return edges

    def _plan_arrays(self, new: Mapping[bytes, tuple[Mapping[str, int], np.ndarray | None]]) -> list[Edge]:
        """:meth:`plan` of a hash-only reach (every score's keys are hash columns): the candidates
        of each new content from the column searches, then every pair of the batch (against the
        index, and among the new ones) scored by :func:`_block_scores` in one numpy pass each. At
        20,000 tiny files a Python call per pair and score was ~44 % of the pipeline thread (a
        batch of 128 new files alone makes 8,128 pairs among themselves)."""
        radii = self.reach.radii
        digests = list(new)
        hashes = [new[d][0] for d in digests]
        keys = _score_keys(radii)
        batch = {k: (np.array([h.get(k, 0) for h in hashes], dtype=np.uint64),
                     np.array([k in h for h in hashes], dtype=bool)) for k in keys}
        skip = np.zeros(len(self._cids.keys), dtype=bool)  # the new contents' old versions
        skip[[self._contents[d].cid for d in digests if d in self._contents]] = True
        rows: list[np.ndarray] = []
        found: list[np.ndarray] = []
        for i, h in enumerate(hashes):
            for name, radius in radii:
                if radius != CHECK:
                    for qkey, column in _comparisons(name):
                        if qkey in h and column in self._trees:
                            ids = self._trees[column].search_arrays(h[qkey], radius)[0]
                            rows.append(np.full(len(ids), i, dtype=np.int64))
                            found.append(ids)
        at = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        cids = np.concatenate(found) if found else np.empty(0, dtype=np.int64)
        if len(cids):  # each candidate once per new content, where first found (as _near_candidates)
            keep = ~skip[cids]
            at, cids = at[keep], cids[keep]
            first = np.unique(at * len(skip) + cids, return_index=True)[1]
            first.sort()
            at, cids = at[first], cids[first]
        edges: list[Edge] = []
        if len(cids):
            other = {k: self._trees[k].values_of_many(cids) for k in keys}
            mine = {k: (v[at], p[at]) for k, (v, p) in batch.items()}
            sel, scores = _block_scores(radii, mine, other, len(cids))
            digest_of = self._cids.keys
            edges += [(digests[i], digest_of[c], sc)
                      for i, c, sc in zip(at[sel].tolist(), cids[sel].tolist(), scores, strict=True)]
        ia, ib = np.triu_indices(len(digests), 1)  # (0, 1), (0, 2) ... (1, 2) ...: the pairs loop's order
        if len(ia):
            sel, scores = _block_scores(radii, {k: (v[ia], p[ia]) for k, (v, p) in batch.items()},
                                        {k: (v[ib], p[ib]) for k, (v, p) in batch.items()}, len(ia))
            edges += [(digests[i], digests[j], sc)
                      for i, j, sc in zip(ia[sel].tolist(), ib[sel].tolist(), scores, strict=True)]
        return edges

    def _unit(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def add(self, path: str, info: FileInfo, hashes: Mapping[str, int], vector: np.ndarray | None = None,
            edges: Iterable[Edge] | None = None) -> None:
        """Index ``path`` (replacing any previous version of it) and link it to its duplicates.

        ``edges``: the near edges of its content from :meth:`plan` (computed here when None); used
        only when the content is new to the index or comes back with other values.
        """
        with self.lock:
            self.generation += 1
            old = self.files.get(path)
            if old is not None and old.digest != info.digest:
                self.remove(path)
            self.files[path] = info
            if not self._touched_all:
                self._touched.add(path)
                self._touch(info.digest)
            content = self._contents.get(info.digest)
            if content is not None and (content.hashes != dict(hashes) or (vector is not None) != content.has_vector):
                # re-encoded under new settings (a method added): relink the content with its new values
                paths = content.paths
                self._drop_content(info.digest)
                content = self._add_content(info.digest, dict(hashes), vector, edges)
                for p in paths:
                    content.paths = _with(content.paths, p)
            elif content is None:
                content = self._add_content(info.digest, dict(hashes), vector, edges)
            content.paths = _with(content.paths, path)

    def _add_content(self, digest: bytes, hashes: dict[str, int], vector: np.ndarray | None,
                     edges: Iterable[Edge] | None) -> _Content:
        if edges is None:
            edges = self.plan({digest: (hashes, vector)})
        content = self._new_content(digest, hashes, vector is not None)
        for column, tree in self._trees.items():
            if column in hashes:
                tree.add(content.cid, hashes[column])
        if vector is not None and self.matching.cnn is not None:
            if self._vectors is None:
                self._vectors = VectorIndex(dim=int(np.asarray(vector).size))
            self._vectors.add(digest, vector)
        for a, b, scores in edges:
            if digest in (a, b):
                self._link(a, b, tuple(scores))
        return content

    def _link(self, a: bytes, b: bytes, scores: tuple) -> None:
        """Record a near edge (both contents indexed) and, when it matches, a graph edge."""
        if a == b or a not in self._contents or b not in self._contents:
            return
        self._near.setdefault(a, {})[b] = scores
        self._near.setdefault(b, {})[a] = scores
        ev = self._match(scores)
        if ev is not None:
            self._touch(a)
            self._touch(b)
            for graph in (self._graph, self._building):
                if graph is not None:
                    graph.setdefault(a, {})[b] = ev
                    graph.setdefault(b, {})[a] = ev

    def remove(self, path: str) -> FileInfo | None:
        """Forget ``path``; its content goes too when no other path has it."""
        with self.lock:
            info = self.files.pop(path, None)
            if info is None:
                return None
            self.generation += 1
            if not self._touched_all:
                self._touched.add(path)
                self._touch(info.digest)
            content = self._contents[info.digest]
            content.paths = _without(content.paths, path)
            if not content.paths:
                self._drop_content(info.digest)
            return info

    def _drop_content(self, digest: bytes) -> None:
        """Forget a content with its edges, hash entries and vector (its paths are the caller's)."""
        for other in self._graph.get(digest, ()):
            self._touch(other)
        cid = self._contents.pop(digest).cid
        for graph in (self._near, self._graph, self._building):
            if graph is None:
                continue
            for other in graph.pop(digest, {}):
                links = graph.get(other)
                if links is not None:
                    links.pop(digest, None)
                    if not links:
                        del graph[other]
        for tree in self._trees.values():
            tree.discard(cid)
        self._cids.release(cid)
        if self._vectors is not None:
            self._vectors.remove(digest)

    def rename(self, old: str, new: str) -> bool:
        """Move an indexed path to a new name (same content: no re-encoding); a file indexed at
        ``new`` is replaced (``mv a b`` over an existing ``b``)."""
        with self.lock:
            if old == new:
                return old in self.files
            info = self.files.pop(old, None)
            if info is None:
                return False
            self.generation += 1
            if new in self.files:
                self.remove(new)
            self.files[new] = info
            if not self._touched_all:
                self._touched.update((old, new))
                self._touch(info.digest)
            content = self._contents[info.digest]
            content.paths = _with(_without(content.paths, old), new)
            return True

    def bulk_load(
        self, items: Iterable[tuple[str, FileInfo, Mapping[str, int], np.ndarray | None]], *, build_graph: bool = True
    ) -> None:
        """Load many files at start-up, without edges: they come from :meth:`load_edges` (the
        store's) and/or :meth:`build_graph` (derived).

        With ``build_graph=False`` the files, hash columns and vectors are loaded at once (queries
        work) and :meth:`build_graph` must be called next, typically in a background thread:
        ``graph_ready`` is False until it has finished.
        """
        with self.lock:
            self.generation += 1
            vectors: dict[bytes, np.ndarray] = {}
            for path, info, hashes, vector in items:
                self.files[path] = info
                content = self._contents.get(info.digest)
                if content is None:
                    content = self._new_content(info.digest, hashes if type(hashes) is dict else dict(hashes),
                                                vector is not None)
                    if vector is not None:
                        vectors[info.digest] = np.asarray(vector, dtype=np.float32).reshape(-1)
                content.paths = _with(content.paths, path)
            self._reset_structures(vectors, rebuild_columns=True)
        if build_graph:
            self.build_graph()

    def load_store(
        self, encodings: Iterable[tuple[bytes, int, int, dict[str, int], bytes | None]],
        files: Iterable[tuple[str, int, int, bytes]], *, build_graph: bool = True
    ) -> None:
        """:meth:`bulk_load` of a store's rows at start-up into an empty index, without edges: they come from
        :meth:`load_edges` (the store's) and/or :meth:`build_graph` (derived).

        ``encodings``: ``(digest, width, height, hashes, cnn vector bytes or None)`` of every
        content; ``files``: ``(path, size, mtime_ns, digest)`` of the files to index (a file whose
        digest has no encoding is left out; a content no file refers to is dropped). Each
        encoding's hashes go straight into the column lists as it is read (one numpy copy per
        column at the end), its size into two int lists by content id: no per-content tuple is
        kept in between, and the files share the content's digest and size objects.

        With ``build_graph=False`` the files, hash columns and vectors are loaded at once (queries
        work) and :meth:`build_graph` must be called next, typically in a background thread:
        ``graph_ready`` is False until it has finished.
        """
        with self.lock:
            if self.files or self._contents:
                raise ValueError("load_store needs an empty index")
            self.generation += 1
            # nothing is indexed: ids restart from 0, empty columns take the one-copy path
            self._cids = IdSlots()
            self._trees = {k: IdHashIndex() for k in self._trees}
            contents, digest_of = self._contents, self._cids.keys
            columns: dict[str, tuple[list[int], list[int]]] = {m: ([], []) for m in self._trees}
            widths: list[int] = []
            heights: list[int] = []
            vectors: dict[bytes, bytes] = {}
            sizes: dict[int, int] = {}  # one int object per distinct width or height
            for digest, w, h, hashes, vector in encodings:  # (IdSlots.take inlined: a million calls)
                cid = len(digest_of)
                digest_of.append(digest)
                contents[digest] = _Content(hashes, vector is not None, (), cid)
                widths.append(sizes.setdefault(w, w))
                heights.append(sizes.setdefault(h, h))
                for m, value in hashes.items():
                    if (kv := columns.get(m)) is not None:
                        kv[0].append(cid)
                        kv[1].append(value)
                if vector is not None:
                    vectors[digest] = vector
            indexed = self.files
            for path, size, mtime_ns, digest in files:
                found = contents.get(digest)
                if found is None:
                    continue
                cid = found.cid
                indexed[path] = FileInfo(digest_of[cid], size, mtime_ns, widths[cid], heights[cid])  # type: ignore[arg-type]
                found.paths = _with(found.paths, path)
            unused = [d for d, c in contents.items() if not c.paths]
            keep = np.ones(len(digest_of), dtype=bool)
            for d in unused:  # encodings of files outside the roots (or of no file): ids freed
                cid = contents.pop(d).cid
                keep[cid] = False
                self._cids.release(cid)
                vectors.pop(d, None)
            del widths, heights
            self._reset_structures(rebuild_columns=False)
            for m, (cids, values) in columns.items():
                ids = np.array(cids, dtype=np.int64)
                vals = np.fromiter(values, dtype=np.uint64, count=len(values))
                del cids[:], values[:]
                if unused:
                    mask = keep[ids]
                    ids, vals = ids[mask], vals[mask]
                self._trees[m].add_many(ids, vals)
            self._load_vectors({d: np.frombuffer(v, dtype=np.float32) for d, v in vectors.items()})
        if build_graph:
            self.build_graph()

    def load_columns(self, digests: list[bytes], hashes: list[dict[str, int]], has_vector: list[bool],
                     columns: Mapping[str, tuple[np.ndarray, np.ndarray]], sizes: tuple[list[int], list[int]],
                     files: tuple[list[str], np.ndarray, list[int], list[int]]) -> None:
        """:meth:`load_store` from columns (a sealed snapshot, :mod:`dedupd.daemon.snapshot`) into an
        empty index: content ``i`` is ``digests[i]`` with ``hashes[i]`` (its id), ``columns`` the
        hash columns as ``(ids, uint64 values)``, ``sizes`` each content's width and height,
        ``files`` ``(paths, content ids, sizes, mtimes)`` in the order a store load reads them.
        Every content must have a file. No dict lookup per file: at a million files a store
        load's lookups of each file's content (in path order, i.e. at random) cost seconds."""
        paths, cids = files[0], files[1]
        with self.lock:
            if self.files or self._contents:
                raise ValueError("load_columns needs an empty index")
            self.generation += 1
            n, k = len(paths), len(digests)
            cid_list = cids.tolist()
            counts = np.bincount(cids, minlength=k) if n else np.zeros(k, dtype=np.int64)
            if counts.size != k or (k and not counts.all()):
                raise ValueError("load_columns: a content without a file, or a file without a content")
            first = np.zeros(k, dtype=np.int64)
            first[cids[::-1]] = np.arange(n - 1, -1, -1)  # each content's first file
            own = [(p,) for p in map(paths.__getitem__, first.tolist())]
            objs = [_Content(h, v, p, i) for i, (h, v, p) in enumerate(zip(hashes, has_vector, own, strict=True))]
            del own
            self._contents = dict(zip(digests, objs, strict=True))
            self._cids = IdSlots(list(digests))
            shared = np.flatnonzero(counts[cids] > 1)  # files of contents with several paths, in file order
            for i in shared[np.argsort(cids[shared], kind="stable")].tolist():
                if first[cid_list[i]] != i:  # (its first path is set above)
                    content = objs[cid_list[i]]
                    content.paths = _with(content.paths, paths[i])

            def column(values: list[int]) -> list[int]:  # per file, one int object per distinct value
                distinct, which = np.unique(np.asarray(values, dtype=np.int64)[cids], return_inverse=True)
                return list(map(distinct.tolist().__getitem__, which.tolist()))

            width_of, height_of = sizes
            self.files = dict(zip(paths, map(FileInfo, map(digests.__getitem__, cid_list), files[2], files[3],
                                             column(width_of), column(height_of)), strict=True))
            if len(self.files) != len(paths):
                raise ValueError("load_columns: a path given twice")
            self._reset_structures(rebuild_columns=False)
            self._trees = {k: IdHashIndex() for k in self._trees}
            for m, (ids, values) in columns.items():
                if m in self._trees:
                    self._trees[m].add_many(ids, values)

    def link_loaded(self, edges: Iterable[tuple[bytes, bytes, tuple]]) -> int:
        """Link near edges known to match the indexed hashes (a sealed snapshot's: unlike
        :meth:`load_edges`, the distances are not recomputed); returns how many were linked."""
        n = 0
        with self.lock:
            self._touch_all()
            for a, b, scores in edges:
                self._link(a, b, scores)
                n += 1
            if n:
                self.generation += 1
        return n

    def retune(self, matching: Matching, reach: Reach | None = None) -> bool:
        """Change thresholds/mode (config reload). Within the reach (and ``reach`` not given, or the
        same) the graph is refiltered from ``near``: True. Otherwise the near edges are dropped
        and re-derived: False. Either way :meth:`build_graph` does the work (in the background:
        this holds the lock for at most O(n) when the methods change)."""
        with self.lock:
            self.generation += 1
            self._graph_epoch += 1  # a running build stops; the next one takes over
            same_methods = _columns(matching) == _columns(self.matching) and (
                (matching.cnn is None) == (self.matching.cnn is None))
            self.matching = matching
            self.graph_ready = False
            if (reach is None or reach == self.reach) and self.reach.covers(matching):
                self._refilter = True
                return True
            self.reach = reach if reach is not None and reach.covers(matching) else Reach.of(matching)
            vectors = {}
            if not same_methods and self._vectors is not None:
                vectors = {k: self._vectors.get(k) for k in self._vectors.keys()}
            if not same_methods:
                self._trees = {k: IdHashIndex() for k in _columns(matching)}
                self._vectors = None
            self._reset_structures(vectors, rebuild_columns=not same_methods)
            return False

    def _reset_structures(self, vectors: Mapping[bytes, np.ndarray] | None = None, *, rebuild_columns: bool) -> None:
        """Empty graphs, derivation due from the start; hash columns and the vector matrix filled
        from the loaded contents (when ``rebuild_columns``)."""
        self.graph_ready = False
        self._graph_epoch += 1  # a build of the previous graph still running stops
        self._touch_all()
        self._near, self._graph, self._building = {}, {}, None
        self._refilter = False
        self.derived, self.derived_to = False, None
        if not rebuild_columns:
            return
        columns: dict[str, tuple[list[int], list[int]]] = {m: ([], []) for m in self._trees}
        for content in self._contents.values():  # one pass over the contents, then a bulk add per column
            for m, value in content.hashes.items():
                if (kv := columns.get(m)) is not None:
                    kv[0].append(content.cid)
                    kv[1].append(value)
        for m, (cids, values) in columns.items():
            self._trees[m].add_many(cids, values)
        self._load_vectors(vectors or {})

    def _load_vectors(self, vectors: Mapping[bytes, np.ndarray]) -> None:
        """The embedding matrix filled with ``vectors`` (of indexed contents), in content order."""
        if vectors and self.matching.cnn is not None:
            keys = [d for d in self._contents if d in vectors]
            self._vectors = VectorIndex(dim=len(next(iter(vectors.values()))), capacity=max(1, len(keys)))
            if keys:
                self._vectors.add_many(keys, np.stack([np.asarray(vectors[k], dtype=np.float32).reshape(-1)
                                                       for k in keys]))

    def load_edges(self, edges: Iterable[tuple[bytes, bytes, Sequence[float | None]]]) -> int:
        """Link stored near edges (one chunk, under the lock). An edge is skipped when a content is
        not indexed or its hash distances differ from the indexed hashes (re-encoded since);
        returns how many were linked."""
        names = self.reach.names
        hashed = [(k, m) for k, m in enumerate(names) if m != "cnn"]
        n = 0
        with self.lock:
            self._touch_all()
            contents = self._contents
            for a, b, scores in edges:
                ca, cb = contents.get(a), contents.get(b)
                if ca is None or cb is None or len(scores) != len(names):
                    continue
                ha, hb = ca.hashes, cb.hashes
                if any(scores[k] != _hash_score(m, ha, hb) for k, m in hashed):
                    continue
                self._link(a, b, tuple(scores))
                n += 1
            if n:
                self.generation += 1
        return n

    def mark_derived(self, cursor: bytes | None, complete: bool) -> None:
        """Say how far the near edges are known (from the store's stamp): all, or up to ``cursor``."""
        with self.lock:
            self.derived, self.derived_to = complete, None if complete else cursor
            self.graph_ready = complete and not self._refilter

    def build_graph(self, should_stop: Callable[[], bool] = lambda: False,
                    persist: Callable[[list[Edge], dict[bytes, dict[str, int]], bytes | None], bool] | None = None,
                    ) -> bool:
        """Bring the graph up to date, a short lock hold at a time: refilter it from ``near``
        (thresholds changed), then derive the near edges still unknown.

        The derivation walks the digests in byte order from :attr:`derived_to`; each step finds the
        near edges of a few digests (to every digest after them) and hands them to ``persist``
        (the store's write, with the cursor) before moving the cursor, so that a crash resumes
        there. Between steps other threads may query, add and remove: a content added meanwhile
        gets its edges from :meth:`add`; pairs with a content removed meanwhile are skipped.
        Returns True when complete; False when stopped or superseded (a reload).
        """
        with self.lock:
            epoch = self._graph_epoch
        if not self._run_refilter(epoch, should_stop):
            return False
        buffered: list[Edge] = []
        expected: dict[bytes, dict[str, int]] = {}
        cursor: bytes | None = None
        flushed = time.monotonic()

        def flush() -> bool:  # one store transaction (an fsync) per PERSIST_S, not per step
            nonlocal flushed
            ok = persist is None or cursor is None or persist(buffered, expected, cursor)
            buffered.clear()
            expected.clear()
            flushed = time.monotonic()
            return ok

        for edges, expect, last in self._derive_steps(epoch, should_stop):
            buffered.extend(edges)
            expected.update(expect)
            cursor = last
            with self.lock:
                if self._graph_epoch != epoch:
                    break
                self.derived_to = last
            if time.monotonic() - flushed >= PERSIST_S and not flush():
                return False
        if not flush():  # also when stopping: what was linked is kept for the next run
            return False
        with self.lock:
            if should_stop() or self._graph_epoch != epoch:
                return False
            finishing = not self.derived
        if finishing and persist is not None and not persist([], {}, None):
            return False
        with self.lock:
            if self._graph_epoch != epoch:
                return False
            self.derived, self.derived_to = True, None
            self.graph_ready = True
            self.generation += 1
            return True

    def _run_refilter(self, epoch: int, should_stop: Callable[[], bool]) -> bool:
        with self.lock:
            if not self._refilter:
                return True
            self._building = {}
            todo = list(self._near)
        pos = 0
        while pos < len(todo):
            if should_stop():
                return False
            with self.lock:
                if self._graph_epoch != epoch:
                    return False
                building = self._building
                assert building is not None
                t0, first = time.monotonic(), pos
                while pos < len(todo) and (pos == first or time.monotonic() - t0 < STEP_S):
                    a = todo[pos]
                    pos += 1
                    for b, scores in self._near.get(a, {}).items():
                        if a < b and (ev := self._match(scores)) is not None:
                            building.setdefault(a, {})[b] = ev
                            building.setdefault(b, {})[a] = ev
            time.sleep(0)
        with self.lock:
            if self._graph_epoch != epoch:
                return False
            assert self._building is not None
            old, self._graph, self._building = self._graph, self._building, None
            self._touch_all()
            self._refilter = False
            self.generation += 1
        drop_in_steps(old)  # the previous graph, outside the lock and not in one C call
        return True

    def _derive_steps(self, epoch: int, should_stop: Callable[[], bool]
                      ) -> Iterator[tuple[list[Edge], dict[bytes, dict[str, int]], bytes]]:
        """Near edges of the digests after the cursor, a lock hold at a time: ``(edges, hashes
        used, last digest done)``; each digest is linked to the digests after it (byte order).

        One index query per digest (the hash index's search: sublinear with a multi-index
        HashIndex). Measured against blocked all-pairs popcount scans of copied columns
        (:func:`dedupd.core.hamming.iter_pairs`, outside the lock): 1.7 s against 3.9 s for 20k
        digests at radius 12 in the same run, so the queries it is.
        """
        with self.lock:
            if self.derived:
                return
            start = self.derived_to
            rows = sorted(d for d in self._contents if start is None or d > start)
        pos = 0
        while pos < len(rows):
            if should_stop():
                return
            edges: list[Edge] = []
            expect: dict[bytes, dict[str, int]] = {}
            with self.lock:
                if self._graph_epoch != epoch:
                    return
                t0, first = time.monotonic(), pos
                while pos < len(rows) and (pos == first or time.monotonic() - t0 < STEP_S):
                    a = rows[pos]
                    pos += 1
                    content = self._contents.get(a)
                    if content is None:
                        continue
                    vector = self._vectors.get(a) if content.has_vector and self._vectors is not None \
                        and a in self._vectors else None
                    for b, sim in self._near_candidates(content.hashes, vector).items():
                        if b > a:
                            self._derived_pair(a, b, sim, edges, expect)
                    self.generation += 1
                last = rows[pos - 1]
            yield edges, expect, last
            time.sleep(0)

    def _derived_pair(self, a: bytes, b: bytes, sim: float | None, edges: list[Edge],
                      expect: dict[bytes, dict[str, int]]) -> None:
        """Score and link one pair found by a derivation (under the lock; both must still exist)."""
        ca, cb = self._contents.get(a), self._contents.get(b)
        if ca is None or cb is None:
            return
        scores = self._scores(ca.hashes, cb.hashes, sim)
        if scores is not None:
            edges.append((a, b, scores))
            expect[a], expect[b] = ca.hashes, cb.hashes
            self._link(a, b, scores)

    # -- reads ------------------------------------------------------------------------------

    def duplicates_of(self, path: str) -> list[tuple[str, Evidence]]:
        """Every indexed path that duplicates ``path``: exact copies first, then by score, then name."""
        with self.lock:
            info = self.files.get(path)
            if info is None:
                return []
            out = [(p, EXACT_EVIDENCE) for p in self._contents[info.digest].paths if p != path]
            for other, ev in self._graph.get(info.digest, {}).items():
                out.extend((p, ev) for p in self._contents[other].paths)
            return sorted(out, key=_order)

    def query(
        self, hashes: Mapping[str, int], vector: np.ndarray | None = None, digest: bytes | None = None
    ) -> list[tuple[str, Evidence]]:
        """Duplicates among indexed files of an image that is *not* added to the index."""
        with self.lock:
            out: list[tuple[str, Evidence]] = []
            if digest is not None and digest in self._contents:
                out.extend((p, EXACT_EVIDENCE) for p in self._contents[digest].paths)
            for other, sim in self._candidates(hashes, vector).items():
                if other == digest:
                    continue
                ev = pair_evidence(self.matching, hashes, self._contents[other].hashes, sim)
                if ev is not None:
                    out.extend((p, ev) for p in self._contents[other].paths)
            return sorted(out, key=_order)

    def adjacency(self) -> dict[str, list[str]]:
        """``{path: [duplicate paths]}`` for every indexed path (the duplicates.json content)."""
        with self.lock:
            return {p: [q for q, _ in self.duplicates_of(p)] for p in sorted(self.files)}

    def neighbours(self) -> dict[str, set[str]]:
        """Path-level neighbour sets for grouping (only paths that have duplicates)."""
        with self.lock:
            out: dict[str, set[str]] = {}
            for digest in self._linked():
                content = self._contents[digest]
                near = [p for other in self._graph.get(digest, {}) for p in self._contents[other].paths]
                if len(content.paths) < 2 and not near:
                    continue
                for p in content.paths:
                    out[p] = {q for q in content.paths if q != p} | set(near)
            return out

    def duplicate_lists(self) -> dict[str, list[tuple[str, Evidence]]]:
        """``{path: duplicates_of(path)}`` for every path that has duplicates, in one pass: each
        content's near duplicates are gathered and sorted once, not once per path."""
        with self.lock:
            out: dict[str, list[tuple[str, Evidence]]] = {}
            contents, graph = self._contents, self._graph
            for digest, links in graph.items():
                paths = contents[digest].paths
                near = [(p, ev) for other, ev in links.items() for p in contents[other].paths]
                if len(near) > 1:
                    near.sort(key=_order)
                if len(paths) == 1:
                    if near:
                        for p in paths:
                            out[p] = near
                else:
                    self._with_copies(out, paths, near)
            for digest, content in contents.items():  # copies without near duplicates
                if len(content.paths) > 1 and digest not in graph:
                    self._with_copies(out, content.paths, [])
            return out

    @staticmethod
    def _with_copies(out: dict[str, list[tuple[str, Evidence]]], paths: Iterable[str],
                     near: list[tuple[str, Evidence]]) -> None:
        """Each of ``paths`` (copies of one content) listed with the others, then ``near``."""
        names = sorted(paths)
        mixed = bool(near) and near[0][1].method == EXACT  # (never so: exact means one digest)
        for p in names:
            found = [(q, EXACT_EVIDENCE) for q in names if q != p] + near
            out[p] = sorted(found, key=_order) if mixed else found

    def edges(self) -> list[tuple[bytes, bytes, str, float]]:
        """Every edge of the graph once: ``(digest_a, digest_b, method, score)``, ``digest_a <
        digest_b``, sorted (the evidence's primary method and its score)."""
        with self.lock:
            return sorted((a, b, ev.method, ev.score) for a, near in self._graph.items()
                          for b, ev in near.items() if a < b)

    def _linked(self) -> Iterator[bytes]:
        """Digests that may have duplicates: those with graph edges, then those with several paths."""
        yield from self._graph
        for digest, content in self._contents.items():
            if len(content.paths) > 1 and digest not in self._graph:
                yield digest

    def snapshot(self) -> GraphSnapshot:
        """An immutable copy of what the reports need, taken under the lock in O(files + edges)
        with no sorting; the report is then built from it outside the lock. The paths are copied
        a slice at a time and the file facts of group members only (one ``dict(files)`` of a
        million paths held the GIL ~35 ms: see :mod:`dedupd.daemon.slices`)."""
        with self.lock:
            dups = self.duplicate_lists()
            files = SnapshotFiles({p: self.files[p] for p in dups}, keys_of(self.files), self)
            return GraphSnapshot(files, dups, self.generation)

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(content ids, hash values)`` of one hash column (for bulk joins: see :meth:`scored_pair`)."""
        with self.lock:
            pairs = list(self._trees[name])
        return (np.array([k for k, _ in pairs], dtype=np.int64),
                np.array([v for _, v in pairs], dtype=np.uint64))

    def scored_pair(self, a: int, b: int) -> Edge | None:
        """The near edge of contents ``a`` and ``b`` (ids from :meth:`column`), digests in byte
        order, or None beyond the reach (CNN similarity not scored)."""
        with self.lock:
            ka, kb = self._cids.keys[a], self._cids.keys[b]
            assert ka is not None and kb is not None
            da, db = (ka, kb) if ka < kb else (kb, ka)
            scores = self._scores(self._contents[da].hashes, self._contents[db].hashes, None)
            return None if scores is None else (da, db, scores)

    def hashes_of(self, digest: bytes) -> dict[str, int]:
        """The hashes of an indexed content."""
        return dict(self._contents[digest].hashes)

    def has(self, digest: bytes) -> bool:
        """True when content ``digest`` is indexed."""
        return digest in self._contents

    def paths_of(self, digest: bytes) -> list[str]:
        """The indexed paths whose content is ``digest``."""
        with self.lock:
            content = self._contents.get(digest)
            return [] if content is None else list(content.paths)

    @property
    def content_count(self) -> int:
        """Distinct contents (digests) indexed: O(1), for status."""
        return len(self._contents)

    def stats(self) -> dict[str, int]:
        """Counts including graph edges (O(graph): for tests and diagnostics, not for status)."""
        with self.lock:
            return {
                "files": len(self.files),
                "contents": len(self._contents),
                "edges": sum(len(e) for e in self._graph.values()) // 2,
            }

    def near_edge_count(self) -> int:
        """Near edges (each once): O(contents with edges)."""
        with self.lock:
            return sum(map(len, self._near.values())) // 2

    def near_edges(self) -> dict[tuple[bytes, bytes], tuple]:
        """Every near edge once, ``(a, b) → scores`` with ``a < b`` (for tests and diagnostics)."""
        with self.lock:
            return {(a, b): s for a, links in self._near.items() for b, s in links.items() if a < b}


class SnapshotFiles(Mapping[str, FileInfo]):
    """The files of a :class:`GraphSnapshot`: every path indexed then (a list), the facts of the
    group members copied; any other path's facts are read from the live index (a keeper whose
    duplicates were all quarantined; a file's facts never change in place, an entry is replaced)."""

    def __init__(self, members: dict[str, FileInfo], paths: list[str], live: MatchIndex) -> None:
        self._members, self.paths, self._live = members, paths, live

    def __getitem__(self, path: str) -> FileInfo:
        info = self._members.get(path)
        if info is not None:
            return info
        with self._live.lock:
            return self._live.files[path]

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)


class GraphSnapshot:
    """What a report is written from (see :meth:`MatchIndex.snapshot`); reads like a MatchIndex."""

    def __init__(self, files: Mapping[str, FileInfo], dups: dict[str, list[tuple[str, Evidence]]],
                 generation: int) -> None:
        self.files = files  # every indexed path (unsorted) and its facts
        self._dups = dups
        self.generation = generation
        self.lock = threading.RLock()  # nothing to guard: for code written against MatchIndex

    @property
    def paths(self) -> list[str]:
        """Every indexed path, unsorted (not to be changed: may be the snapshot's own list)."""
        return self.files.paths if isinstance(self.files, SnapshotFiles) else list(self.files)

    def duplicates_of(self, path: str) -> list[tuple[str, Evidence]]:
        return self._dups.get(path, [])

    def neighbours(self) -> dict[str, set[str]]:
        return {p: {q for q, _ in d} for p, d in self._dups.items()}

    def duplicate_lists(self) -> dict[str, list[tuple[str, Evidence]]]:
        return self._dups

    def drop(self) -> None:
        """Free what the snapshot copied a little at a time (see :func:`drop_in_steps`); it is empty after."""
        drop_in_steps(self._dups)
        if isinstance(self.files, SnapshotFiles):
            drop_in_steps(self.files._members)
            drop_in_steps(self.files.paths)
        elif isinstance(self.files, dict):
            drop_in_steps(self.files)


def _score_name(method: str, option: str) -> str:
    """Name of a score in an edge: the plain method, or ``"method@option"`` for a variant family."""
    return f"{method}@{option}" if option else method


@functools.lru_cache(maxsize=64)
def _comparisons(name: str) -> tuple[tuple[str, str], ...]:
    """``(key of a, key of b)`` pairs whose smallest Hamming distance is score ``name``."""
    method, _, option = name.partition("@")
    return ((method, method),) if not option else hash_variants.option_comparisons(method, option)


def _hash_score(name: str, a: Mapping[str, int], b: Mapping[str, int]) -> int | None:
    """The Hamming score ``name`` (:func:`_score_name`) of two contents' hashes; None when a side
    lacks it (a variant family: the smallest distance of its comparisons, as
    :func:`dedupd.core.variants.distances` gives it; the framing check: :func:`match_policy.framing_distance`)."""
    method, _, option = name.partition("@")
    if option == match_policy.AGREE:
        return match_policy.framing_distance(method, a, b)
    best = None
    for ka, kb in _comparisons(name):
        if ka in a and kb in b:
            d = (a[ka] ^ b[kb]).bit_count()
            if best is None or d < best:
                best = d
    return best


@functools.lru_cache(maxsize=64)
def _score_parts(name: str) -> tuple[bool, tuple[tuple[str, str], ...]]:
    """How score ``name`` derives from Hamming distances, as :func:`_hash_score` computes it:
    ``(worst, comparisons)``: worst, the largest distance of all the comparisons (None unless both
    sides have every key: the framing check, :func:`match_policy.framing_distance`); otherwise the
    smallest of those both sides have (None when none)."""
    method, _, option = name.partition("@")
    if option == match_policy.AGREE:
        return True, tuple((k, k) for k in (hash_variants.key(method, s) for s in hash_variants.CROP_SCALES))
    return False, _comparisons(name)


@functools.lru_cache(maxsize=64)
def _score_keys(radii: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """Every hash key the scores of ``radii`` read (either side)."""
    return tuple(sorted({k for name, _ in radii for pair in _score_parts(name)[1] for k in pair}))


#: hash columns of a block of pairs' sides: key → (uint64 values, present)
Columns = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _block_scores(radii: Sequence[tuple[str, int]], a: Columns, b: Columns, n: int
                  ) -> tuple[np.ndarray, list[tuple[int | None, ...]]]:
    """The scores of ``n`` pairs (row k of ``a`` with row k of ``b``; each holds every key of
    :func:`_score_keys`) in ``radii`` order, as :func:`_hash_score` gives them pair by pair:
    ``(rows within the reach, their score tuples)``."""
    within = np.zeros(n, dtype=bool)
    columns: list[tuple[np.ndarray, np.ndarray]] = []
    for name, radius in radii:
        worst, comps = _score_parts(name)
        best = valid = None
        for ka, kb in comps:
            (va, pa), (vb, pb) = a[ka], b[kb]
            d = np.bitwise_count(va ^ vb)
            ok = pa & pb
            if best is None or valid is None:
                best, valid = d, ok
            elif worst:
                best, valid = np.maximum(best, d), valid & ok
            else:
                best, valid = np.where(ok & (~valid | (d < best)), d, best), valid | ok
        assert best is not None and valid is not None
        if radius >= 0:
            within |= valid & (best <= radius)
        columns.append((best, valid))
    sel = np.flatnonzero(within)
    lists: list[list[int | None]] = []
    for best, valid in columns:
        values: list[int | None] = best[sel].tolist()
        ok = valid[sel]
        if not ok.all():
            values = [v if o else None for v, o in zip(values, ok.tolist(), strict=True)]
        lists.append(values)
    return sel, list(zip(*lists, strict=True)) if lists else [() for _ in sel]


def grown_scores(stored: Reach, grown: Reach, scores: Sequence[float | None], a: Mapping[str, int],
                 b: Mapping[str, int]) -> list[float | None] | None:
    """An edge's ``scores`` (in ``stored``'s order) in the order of ``grown`` (:meth:`Reach.with_checks`),
    the check scores computed from the two contents' hashes; None when ``scores`` is not of ``stored``."""
    old = stored.names
    if len(scores) != len(old):
        return None
    where = {m: k for k, m in enumerate(old)}
    return [scores[where[m]] if m in where else _hash_score(m, a, b) for m in grown.names]


def _columns(matching: Matching) -> list[str]:
    """Hash columns the index keeps: each method's plain hash and its variant hashes."""
    return [k for m in matching.hashes for k in (m, *hash_variants.variant_keys(m, matching.options.get(m, ())))]


def _lookups(matching: Matching, method: str) -> list[tuple[str, str, int]]:
    """``(key of the query, column searched, radius)`` of each comparison ``method`` makes (plain first)."""
    out = []
    for option, radius in matching.limits(method):
        comps = [(method, method)] if not option else hash_variants.option_comparisons(method, option)
        out += [(q, c, radius) for q, c in comps]
    return out


def _order(item: tuple[str, Evidence]) -> tuple:
    return closeness(*item)
